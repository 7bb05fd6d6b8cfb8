"""`tinycls search`: MACs by architecture and size, jumps marked, budget applied, no training."""

import csv

import pytest
from typer.testing import CliRunner

from tinycls.cli import app
from tinycls.families import search

ARCH = "pytorchcv:shufflenet_g3_wd4"


def test_80_px_is_just_before_shufflenets_jump():
    rows = {r.size: r for r in search([ARCH], [72, 80], 9)}
    assert rows[80].macs == 1_688_940 and rows[80].before_jump and rows[80].jump == pytest.approx(0.224, abs=0.001)
    assert not rows[72].before_jump  # 73 px costs only 6% more


def test_budget_filters_and_rows_are_sorted_by_macs():
    rows = search([ARCH, "pytorchcv:fdmobilenet_wd4"], [64, 80], 9, budget=1_700_000)
    assert [r.macs for r in rows] == sorted(r.macs for r in rows)
    assert {(r.arch, r.size) for r in rows if r.within_budget} == {
        (ARCH, 64),
        ("pytorchcv:fdmobilenet_wd4", 64),
        (ARCH, 80),
    }


def test_cli_writes_csv_and_markdown(tmp_path):
    out = tmp_path / "search.csv"
    args = ["search", "--archs", ARCH, "--sizes", "64,80", "--budget", "1700000", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (
        "| pytorchcv:shufflenet_g3_wd4 | 80 | 1,688,940 | 67,062 | +22.4% | before a jump: 81 px costs +22% |"
        in r.output
    )
    rows = list(csv.DictReader(out.open()))
    assert [(row["size"], row["macs"]) for row in rows] == [("64", "1018128"), ("80", "1688940")]


def test_bad_inputs_name_the_value():
    runner = CliRunner()
    r = runner.invoke(app, ["search", "--archs", ARCH, "--sizes", "4,80"])
    assert r.exit_code == 2 and "sizes [4]: every size must be >= 8 px." in r.output
    r = runner.invoke(app, ["search", "--archs", "pytorchcv:nonet", "--sizes", "80"])
    assert r.exit_code == 2 and "pytorchcv:nonet: unknown pytorchcv model" in r.output
