"""`tinycls report`: one experiment (or the workspace) against a baseline, as Markdown for a pull
request or a terminal. Everything comes from DVC's own commands (`dvc metrics diff --json`,
`dvc params diff --json`, `dvc plots diff --json`, `dvc exp show --json`), never from its internals:
the headline with deltas, the params that changed, per-class F1 deltas, the final model's
confusion matrix and F1 against MACs over the baseline's experiments as PNG images, and the
training curves as `dvc plots diff` HTML."""

import json
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinycls.errors import InputError
from tinycls.evaluate import HEADLINE
from tinycls.text import md, md_code, plot_label

HEADLINE_FILE = "metrics/headline.json"
DETAIL_FILE = "metrics/score.json"  # per-class F1
CONFUSION = "plots/score/confusion.csv"
WORKSPACE = "workspace"
# how each headline number reads, and which way is better (+1 up, -1 down, 0 neither)
LABELS = {
    "f1": ("macro F1 (final model)", 1),
    "score": ("score (lower is better)", -1),
    "macs": ("MACs", -1),
    "params": ("params", -1),
    "latency_ms": ("latency ms (ONNX FP32, 1 thread, p50)", -1),
    "onnx_bytes": ("ONNX bytes", -1),
    "student_f1": ("student macro F1 (before compression)", 1),
    "teacher_f1": ("teacher macro F1 (pseudo labels)", 1),
    "compression": ("compression", 0),  # a description (none, or compress's kinds)
}
assert set(LABELS) == set(HEADLINE)  # every key of the headline has a label


Runner = Callable[[Sequence[str]], str]


def dvc_runner(dvc: str) -> Runner:
    """Run `dvc ARGS...` in the current directory and return its stdout (InputError on failure)."""

    def run(args: Sequence[str]) -> str:
        r = subprocess.run([dvc, *args], capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise InputError(
                f"`dvc {' '.join(args)}` failed: {' '.join(tail)}. Run it in the repository; experiment names: "
                "`dvc exp list`."
            )
        return r.stdout

    return run


@dataclass
class Report:
    baseline: str
    target: str  # an experiment name, a commit, or "workspace"
    headline: dict[str, dict[str, Any]]  # key -> {"old", "new", "diff"}
    params: dict[str, dict[str, Any]]  # changed params.yaml keys -> {"old", "new"}
    per_class: dict[str, dict[str, Any]]  # class -> {"old", "new", "diff"}
    confusion: dict[str, Counter] = field(default_factory=dict)  # rev -> Counter((actual, predicted))
    images: dict[str, Path] = field(default_factory=dict)  # caption -> PNG
    curves: Path | None = None  # `dvc plots diff` HTML


def _revs(baseline: str, target: str) -> list[str]:
    return [baseline] if target == WORKSPACE else [baseline, target]


def collect(dvc: Runner, baseline: str = "HEAD", target: str = WORKSPACE) -> Report:
    """The numbers of `target` against `baseline` from DVC's JSON output.

    Raises:
        InputError: DVC fails (unknown experiment or revision, not a DVC repository) or the
            target has no headline (not run yet).
    """
    revs = _revs(baseline, target)
    diff = json.loads(dvc(["metrics", "diff", "--json", "--all", *revs]) or "{}")
    headline = diff.get(HEADLINE_FILE) or {}
    lacking = [
        rev
        for rev, side in ((baseline, "old"), (target, "new"))
        if not all(isinstance((headline.get(k) or {}).get(side), int | float) for k in ("f1", "macs", "score"))
    ]
    if lacking:
        raise InputError(
            f"{' and '.join(lacking)}: no {HEADLINE_FILE} with f1, macs and score (`dvc metrics diff "
            f"{' '.join(revs)}`). Run the pipeline there first (`dvc repro`, `dvc exp run`); a commit made "
            "before the headline existed has none: compare with a later one (`--baseline`). f1 is null where test/ "
            "is unlabelled and prepare.holdout_fraction is 0: no F1 there would be honest."
        )
    params = (json.loads(dvc(["params", "diff", "--json", *revs]) or "{}")).get("params.yaml") or {}
    detail = json.loads(dvc(["metrics", "diff", "--json", "--all", *revs, "--targets", DETAIL_FILE]) or "{}")
    per_class = {
        k.split(".", 1)[1]: v for k, v in (detail.get(DETAIL_FILE) or {}).items() if k.startswith("per_class_f1.")
    }
    plots = json.loads(dvc(["plots", "diff", "--json", *revs, "--targets", CONFUSION]) or "{}")
    confusion: dict[str, Counter] = {}
    for entries in (plots.get("data") or {}).values():
        for entry in entries:
            for row in ((entry.get("content") or {}).get("data") or {}).get("values") or []:
                confusion.setdefault(row["rev"], Counter())[(row["actual"], row["predicted"])] += 1
    return Report(baseline, target, headline, params, per_class, confusion)


COUNTS = ("macs", "params", "onnx_bytes")  # whole numbers, shown with thousands separators


def _num(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if key in COUNTS or isinstance(v, int):
        return f"{int(v):,}"
    return f"{v:.3f}" if key == "latency_ms" else f"{v:.4f}"


def _delta(key: str, d: dict[str, Any]) -> str:
    diff = d.get("diff")  # DVC gives it whenever both sides are numbers
    if not isinstance(diff, int | float) or diff == 0:
        return "0" if diff == 0 else ""
    sign = LABELS.get(key, ("", 0))[1]
    mark = " (better)" if diff * sign > 0 else " (worse)" if sign else ""
    if key in COUNTS:
        return f"{int(diff):+,}{mark}"
    return (f"{diff:+.3f}" if key == "latency_ms" else f"{diff:+.4f}") + mark


def teacher_lead_kept(r: Report) -> str | None:
    """A line on distillation when the two runs differ in [kd] alone, one of them without KD, and
    share a teacher: the share of that teacher's lead over the student without KD which the
    student with KD keeps, (student - no KD) / (teacher - no KD); None otherwise."""
    mode = r.params.get("kd.mode") or {}
    if "none" not in (mode.get("old"), mode.get("new")) or any(not k.startswith("kd.") for k in r.params):
        return None
    s, t = r.headline.get("student_f1") or {}, r.headline.get("teacher_f1") or {}
    teacher = t.get("old")
    if teacher is None or t.get("new") != teacher or None in (s.get("old"), s.get("new")):
        return None
    kd, none = ("new", "old") if mode["old"] == "none" else ("old", "new")
    if teacher <= s[none]:
        return None  # no lead to keep
    name = {"old": r.baseline, "new": r.target}
    share = (s[kd] - s[none]) / (teacher - s[none])
    kd_run, none_run = md_code(name[kd], cell=False), md_code(name[none], cell=False)
    return (
        f"**Distillation**: {kd_run} keeps {share:.0%} of the teacher's lead over the same student without KD "
        f"({none_run}): ({s[kd]:.4f} - {s[none]:.4f}) / ({teacher:.4f} - {s[none]:.4f})."
    )


def to_markdown(r: Report, top_classes: int = 5) -> str:
    """The report as GitHub-flavoured Markdown; images and curves linked relative to the report's folder."""
    new, base = md_code(r.target), md_code(r.baseline)
    lines = [f"## tinycls: {md_code(r.target, cell=False)} against {md_code(r.baseline, cell=False)}", ""]
    lines += [f"| | {base} | {new} | change |", "|---|---:|---:|---:|"]
    for key in HEADLINE:
        if key in r.headline and key in LABELS:
            d = r.headline[key]
            lines.append(
                f"| {LABELS[key][0]} | {_num(key, d.get('old'))} | {_num(key, d.get('new'))} | {_delta(key, d)} |"
            )
    lines.append("")
    if kept := teacher_lead_kept(r):
        lines += [kept, ""]
    if r.params:
        lines += ["**Params changed**", "", f"| param | {base} | {new} |", "|---|---|---|"]
        for key, d in sorted(r.params.items()):
            lines.append(f"| {md_code(key)} | {md(d.get('old'))} | {md(d.get('new'))} |")
    else:
        lines.append("**Params changed**: none (same params.yaml)")
    lines.append("")
    if r.per_class:
        moved = sorted(r.per_class.items(), key=lambda kv: (-abs(kv[1].get("diff") or 0), kv[0]))[:top_classes]
        lines += [f"**Per-class F1**, the {len(moved)} largest changes of {len(r.per_class)}", ""]
        lines += [f"| class | {base} | {new} | change |", "|---|---:|---:|---:|"]
        for cls, d in moved:
            lines.append(f"| {md(cls)} | {_num('f1', d.get('old'))} | {_num('f1', d.get('new'))} | {_delta('f1', d)} |")
        lines.append("")
    for caption, path in r.images.items():
        lines += [f"![{md(caption)}]({path.name})", ""]
    if r.curves is not None:
        link = f"{r.curves.parent.name}/{r.curves.name}"
        revs = " ".join(_revs(r.baseline, r.target))
        lines.append(f"Training curves, both runs: [{link}]({link}) ({md_code(f'dvc plots diff {revs}', cell=False)}).")
    return "\n".join(lines) + "\n"


def plot_confusion(counts: Counter, title: str, path: Path) -> None:
    """The confusion matrix (rows: actual, columns: predicted), counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    classes = sorted({c for pair in counts for c in pair})
    m = np.array([[counts[(a, p)] for p in classes] for a in classes])
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(classes), 0.8 + 0.5 * len(classes)), dpi=110)
    ax.imshow(m, cmap="Blues")
    shown = [plot_label(c) for c in classes]
    ax.set_xticks(range(len(classes)), shown, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), shown, fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if m[i, j] > m.max() / 2 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(plot_label(title), fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(r: Report, dvc: Runner, out: Path, show: list[dict[str, Any]]) -> Path:
    """Write `out`/report.md with confusion.png, pareto.png and the curves (`out`/curves/index.html)."""
    from tinycls.pareto import mark_front, plot, run_name, runs

    out.mkdir(parents=True, exist_ok=True)
    counts = r.confusion.get(r.target)
    if counts:
        r.images[f"confusion matrix of {r.target}"] = out / "confusion.png"
        plot_confusion(counts, f"{r.target}: actual (rows) against predicted", out / "confusion.png")
    found = runs(show, workspace=r.target == WORKSPACE)
    if found:
        r.images["F1 against MACs, every run of the baseline"] = out / "pareto.png"
        base = next((row for row in show if row.get("rev") != WORKSPACE), {})
        plot(mark_front(found), out / "pareto.png", highlight=[n for n in (run_name(base), r.target) if n])
    dvc(["plots", "diff", *_revs(r.baseline, r.target), "--out", str(out / "curves")])
    r.curves = out / "curves" / "index.html"
    path = out / "report.md"
    path.write_text(to_markdown(r))
    return path
