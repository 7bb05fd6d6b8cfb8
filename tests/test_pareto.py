"""The Pareto front over experiments and the candidate queue (a real `dvc exp show --json` is
read in test_pipeline's end-to-end run)."""

import json

import pytest
from typer.testing import CliRunner

from tinycls.cli import app
from tinycls.pareto import mark_front, queue_commands, runs


def _rev(name, macs=None, f1=None, file="metrics/headline.json"):
    metrics = {} if macs is None else {file: {"data": {"macs": macs, "f1": f1, "score": 0.1}}}
    student = {"arch": f"timm:{name}", "input_size": 32}
    return {
        "rev": "abc1234def",
        "name": name,
        "data": {"metrics": metrics, "params": {"params.yaml": {"data": {"student": student}}}},
    }


SHOW = [
    {"rev": "workspace", **{k: v for k, v in _rev(None, 300, 0.80).items() if k != "rev"}},  # repeats HEAD
    {
        **_rev(None, 300, 0.80),
        "experiments": [
            {"revs": [_rev("small", 100, 0.70)]},
            {"revs": [_rev("worse", 200, 0.65)]},  # more MACs, less F1 than `small`
            {"revs": [_rev("tie", 100, 0.60)]},  # same MACs as `small`, less F1
            {"revs": [_rev("queued")]},  # no metrics yet
            {"revs": [_rev("running", 300, 0.80)], "executor": {"state": "running"}},  # the baseline's metrics
            {"revs": [_rev("big", 900, 0.85)]},
            {"revs": [_rev("older", 950, 0.84, file="metrics/score.json")]},  # before metrics/headline.json
        ],
    },
]


def test_front_keeps_the_runs_no_other_beats():
    found = mark_front(runs(SHOW))
    assert [(r.name, r.pareto) for r in found] == [
        ("small", True),
        ("tie", False),
        ("worse", False),
        ("abc1234", True),  # the commit, by its short hash
        ("big", True),
        ("older", False),
    ]
    # arch and input size from the run's params (the headline has numbers only)
    assert {(r.name, r.arch, r.input_size) for r in found} >= {("small", "timm:small", 32), ("big", "timm:big", 32)}


def test_cli_writes_png_csv_and_table(tmp_path):
    show = tmp_path / "show.json"
    show.write_text(json.dumps(SHOW))
    out, csv_out = tmp_path / "p.png", tmp_path / "p.csv"
    r = CliRunner().invoke(app, ["pareto", "--from", str(show), "--out", str(out), "--csv", str(csv_out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = csv_out.read_text().splitlines()
    assert lines[0] == "name,arch,input_size,macs,f1,score,compression,latency_ms,onnx_bytes,pareto" and len(lines) == 7
    assert "3 of 6 runs on the front" in r.output
    show.write_text(json.dumps([{"rev": "x", "data": {"metrics": {}}}]))
    r = CliRunner().invoke(app, ["pareto", "--from", str(show), "--out", str(out), "--csv", str(csv_out)])
    assert r.exit_code == 2 and "no experiment has metrics/headline.json with an F1 yet" in r.output


def test_front_by_measured_latency_or_size(tmp_path):
    def timed(name, macs, f1, ms, size):
        rev = _rev(name, macs, f1)
        rev["data"]["metrics"]["metrics/headline.json"]["data"] |= {"latency_ms": ms, "onnx_bytes": size}
        return {"revs": [rev]}

    show = [
        {
            **_rev(None, 300, 0.80),  # before the export stage: no latency, left out of those fronts
            "experiments": [
                timed("few-macs-slow", 100, 0.70, 0.9, 400),
                timed("more-macs-fast", 200, 0.75, 0.3, 300),
                timed("big", 900, 0.85, 1.2, 900),
            ],
        }
    ]
    by_macs = {r.name: r.pareto for r in mark_front(runs(show))}
    assert by_macs == {"few-macs-slow": True, "more-macs-fast": True, "abc1234": True, "big": True}
    by_latency = mark_front(runs(show), "latency")
    order = [(r.name, r.pareto) for r in by_latency]
    assert order == [("more-macs-fast", True), ("few-macs-slow", False), ("big", True)]
    assert [r.name for r in mark_front(runs(show), "size") if r.pareto] == ["more-macs-fast", "big"]
    path = tmp_path / "show.json"
    path.write_text(json.dumps(show))
    out, csv_out = tmp_path / "p.png", tmp_path / "p.csv"
    args = ["pareto", "--from", str(path), "--x", "latency", "--out", str(out), "--csv", str(csv_out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "| more-macs-fast | timm:more-macs-fast | 32 | 200 | 0.300 | 300 |" in r.output
    assert "2 of 3 runs on the front" in r.output
    r = CliRunner().invoke(app, ["pareto", "--from", str(path), "--x", "ms", "--out", str(out)])
    assert r.exit_code == 2 and "expected one of macs, latency, size" in r.output


def test_queue_commands_from_search_csv(tmp_path):
    cands = tmp_path / "c.csv"
    cands.write_text("arch,size,macs\npytorchcv:fdmobilenet_wd4,80,1\ntimm:mobilenetv3_small_050,64,2\n")
    r = CliRunner().invoke(app, ["queue", str(cands), "--epochs", "3", "-S", "kd.mode=vanilla", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        "dvc exp run --queue -n cand-fdmobilenet_wd4-80px -S student.arch=pytorchcv:fdmobilenet_wd4 "
        "-S student.input_size=80 -S student.epochs=3 -S 'compress.keep_blocks=[]' -S kd.mode=vanilla",
        "dvc exp run --queue -n cand-mobilenetv3_small_050-64px -S student.arch=timm:mobilenetv3_small_050 "
        "-S student.input_size=64 -S student.epochs=3 -S 'compress.keep_blocks=[]' -S kd.mode=vanilla",
    ]


@pytest.mark.parametrize(
    ("rows", "epochs", "message"),
    [
        ([{"arch": "pytorchcv:x", "size": "big"}], 2, "line 2: expected columns arch and size"),
        ([{"name": "x"}], 2, "line 2: expected columns arch and size"),
        ([], 0, "epochs: 0 must be >= 1"),
    ],
)
def test_bad_candidates(rows, epochs, message):
    with pytest.raises(ValueError, match=message):
        queue_commands(rows, epochs)


def test_the_workspace_row_on_request():
    assert "workspace" not in {r.name for r in runs(SHOW)}
    assert [r for r in runs(SHOW, workspace=True) if r.name == "workspace"][0].macs == 300
