"""`tinycls report` from DVC's JSON (a real `dvc exp run` is reported in test_pipeline's end-to-end run)."""

import json
import re
from collections import Counter

import pytest

from tinycls.errors import InputError
from tinycls.report import Report, collect, plot_confusion, to_markdown

HEADLINE = {
    "f1": {"old": 0.8421, "new": 0.8405, "diff": -0.0016},
    "score": {"old": 0.0152, "new": 0.0171, "diff": 0.0019},
    "macs": {"old": 256392, "new": 256392, "diff": 0},
    "latency_ms": {"old": 0.159, "new": 0.149, "diff": -0.010},
    "student_f1": {"old": 0.8421, "new": 0.8405, "diff": -0.0016},
    "teacher_f1": {"old": 0.8928, "new": 0.8928, "diff": 0},
    "compression": {"old": "none", "new": "none"},  # strings have no diff
}
PER_CLASS = {
    f"per_class_f1.{c}": {"old": 0.9, "new": 0.9 + d / 100, "diff": d / 100}
    for c, d in zip("ABCDEFG", range(-3, 4), strict=True)
}
CONFUSION = [{"actual": "A", "predicted": "A", "rev": "kd-none"}] * 3 + [
    {"actual": "A", "predicted": "B", "rev": "HEAD"}
]


def fake_dvc(headline=HEADLINE):
    calls = []

    def run(args):
        calls.append(list(args))
        if args[:2] == ["metrics", "diff"] and "--targets" in args:
            assert args[-2:] == ["--targets", "metrics/score.json"]  # after the revisions, or DVC takes them as targets
            return json.dumps(
                {"metrics/score.json": {**PER_CLASS, "accuracy": {"old": 0.8, "new": 0.81, "diff": 0.01}}}
            )
        if args[:2] == ["metrics", "diff"]:
            return json.dumps({"metrics/headline.json": headline} if headline else {})
        if args[:2] == ["params", "diff"]:
            return json.dumps({"params.yaml": {"kd.mode": {"old": "true_label", "new": "none"}}})
        if args[:2] == ["plots", "diff"]:
            entry = {"type": "vega", "revisions": ["HEAD", "kd-none"], "content": {"data": {"values": CONFUSION}}}
            return json.dumps({"data": {"dvc.yaml::plots/score/confusion.csv": [entry]}})
        raise AssertionError(args)

    return run, calls


def test_collect_reads_dvc_json_and_the_markdown_shows_deltas():
    dvc, calls = fake_dvc()
    r = collect(dvc, "HEAD", "kd-none")
    assert all(c[-2:] == ["HEAD", "kd-none"] or c[-4:-2] == ["HEAD", "kd-none"] for c in calls)
    assert r.confusion["kd-none"] == Counter({("A", "A"): 3}) and r.confusion["HEAD"] == Counter({("A", "B"): 1})
    md = to_markdown(r, top_classes=3)
    lines = md.splitlines()
    assert lines[0] == "## tinycls: `kd-none` against `HEAD`"
    assert "| macro F1 (final model) | 0.8421 | 0.8405 | -0.0016 (worse) |" in lines
    assert "| score (lower is better) | 0.0152 | 0.0171 | +0.0019 (worse) |" in lines
    assert "| MACs | 256,392 | 256,392 | 0 |" in lines
    assert "| compression | none | none |  |" in lines  # a string: no delta
    # kd.mode alone changed, to none: HEAD's student keeps (0.8421 - 0.8405) / (0.8928 - 0.8405) of the lead
    assert (
        "**Distillation**: `HEAD` keeps 3% of the teacher's lead over the same student without KD (`kd-none`): "
        "(0.8421 - 0.8405) / (0.8928 - 0.8405)." in lines
    )
    assert "| latency ms (ONNX FP32, 1 thread, p50) | 0.159 | 0.149 | -0.010 (better) |" in lines
    assert "| `kd.mode` | true_label | none |" in lines
    # the three largest per-class moves, largest first (ties by name), not the other four
    i = lines.index("**Per-class F1**, the 3 largest changes of 7")
    assert [row.split(" | ")[0] for row in lines[i + 4 : i + 7]] == ["| A", "| G", "| B"]
    assert not any(row.startswith(("| C |", "| D |", "| E |", "| F |")) for row in lines)


def test_workspace_against_a_commit_passes_one_revision():
    dvc, calls = fake_dvc()
    r = collect(dvc, "main")
    assert r.target == "workspace" and calls[0] == ["metrics", "diff", "--json", "--all", "main"]
    assert "## tinycls: `workspace` against `main`" in to_markdown(r)


def test_no_headline_says_to_run_the_pipeline():
    dvc, _ = fake_dvc(headline={})
    with pytest.raises(InputError, match=r"^HEAD and kd-none: no metrics/headline.json .*`dvc repro`"):
        collect(dvc, "HEAD", "kd-none")
    # a baseline from before the headline: DVC gives its side as None
    dvc, _ = fake_dvc(headline={k: {**v, "old": None} for k, v in HEADLINE.items()})
    with pytest.raises(InputError, match=r"^HEAD: no metrics/headline.json .*compare with a later one"):
        collect(dvc, "HEAD", "kd-none")


def test_confusion_png(tmp_path):
    path = tmp_path / "c.png"
    plot_confusion(Counter({("A", "A"): 5, ("A", "B"): 1, ("B", "B"): 4}), "t", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_teachers_lead_kept_needs_a_run_without_kd_that_differs_in_kd_alone():
    from tinycls.report import Report, teacher_lead_kept

    head = {k: HEADLINE[k] for k in ("student_f1", "teacher_f1")}
    r = Report("HEAD", "kd-views", head, {"kd.mode": {"old": "none", "new": "true_label"}}, {})
    # kd on the new side (here behind the run without it: a negative share)
    assert teacher_lead_kept(r).startswith("**Distillation**: `kd-views` keeps -3% of the teacher's lead")
    r.params["student.epochs"] = {"old": 16, "new": 40}  # another student: no pairing
    assert teacher_lead_kept(r) is None
    r = Report("HEAD", "x", head, {"kd.alpha": {"old": 0.3, "new": 0.5}}, {})  # both distil
    assert teacher_lead_kept(r) is None
    other = {**head, "teacher_f1": {"old": 0.89, "new": 0.90, "diff": 0.01}}  # another teacher
    assert teacher_lead_kept(Report("HEAD", "x", other, {"kd.mode": {"old": "none", "new": "vanilla"}}, {})) is None


def test_names_are_escaped_in_markdown_and_plots(tmp_path):
    """A class folder or experiment name is shown as written: it cannot split a table cell, open
    an HTML tag in a pull-request comment, or break a plot as mathtext (finding 11 of issue 28)."""
    from tinycls.pareto import Run, mark_front, plot

    cls, exp = "a|b <img src=x onerror=alert(1)>", "exp`$x|y"
    per_class = {cls: {"old": 0.5, "new": 0.6, "diff": 0.1}}
    md = to_markdown(Report("HEAD", exp, HEADLINE, {"kd.mode": {"old": "none", "new": "a|b"}}, per_class))
    assert not re.search(r"(?<!\\)<", md) and r"| a\|b \<img src=x onerror=alert(1)\> | 0.5000 | 0.6000 |" in md
    assert "## tinycls: ``exp`$x|y`` against `HEAD`" in md and "| `kd.mode` | none | a\\|b |" in md
    assert "| | `HEAD` | ``exp`$x\\|y`` | change |" in md  # in a table cell the | is escaped
    table = [ln for ln in md.splitlines() if ln.startswith("| a")]
    assert len(table) == 1 and len(table[0].replace("\\|", "").split("|")) == 6  # 4 cells: no extra column
    plot_confusion(Counter({(cls, "$x"): 1, ("$x", "$x"): 2, ("_c", cls): 1}), f"{exp}: actual", tmp_path / "c.png")
    runs = [Run(n, "nas:x", 32, m, f, 0.0, "none") for n, m, f in (("$x", 10, 0.5), ("_y", 20, 0.6))]
    plot(mark_front(runs), tmp_path / "p.png", highlight=["$x"])
    assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in ("c.png", "p.png"))
