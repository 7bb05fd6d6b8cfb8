"""Experiments across machines (docs/experiments.md): clones that share one git remote and one DVC
remote each run experiments and push them; a third clone pulls them all and compares them."""

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.test_pipeline import _sh, _tiny_repo


def _clone(origin: Path, path: Path, pull: bool = True) -> Path:
    """A machine: a plain `git clone` of the shared git remote, then `dvc pull` of the baseline."""
    _sh(origin.parent, "git", "clone", "-q", str(origin), str(path))
    _sh(path, "git", "config", "user.email", "ci@tinycls")
    _sh(path, "git", "config", "user.name", "ci")
    if pull:
        _sh(path, "dvc", "pull", "-q")
    return path


def _experiments(show: list[dict]) -> dict[str, dict]:
    """name -> data of every experiment row of `dvc exp show --json`."""
    return {e["name"]: e["data"] for row in show for x in (row.get("experiments") or []) for e in x["revs"]}


@pytest.mark.slow
def test_two_clones_push_experiments_a_third_pulls_and_compares_them(tmp_path):
    # the project: a baseline trained once, a DVC remote (a folder) in the committed .dvc/config,
    # a bare git remote, and the baseline's outputs pushed to the DVC remote
    repo = _tiny_repo(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["pretrain"]["source"], params["compress"]["keep_blocks"] = "none", []  # what this test needs trains
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(repo, "dvc", "repro")
    _sh(repo, "dvc", "remote", "add", "-d", "store", str(tmp_path / "dvc-store"))
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "commit", "-qm", "baseline")
    origin = tmp_path / "origin.git"
    _sh(tmp_path, "git", "clone", "-q", "--bare", str(repo), str(origin))
    _sh(repo, "dvc", "push")

    # machines A and B: each checks the baseline out of the DVC remote (nothing retrains) and runs
    # its share of the sweep at the same time; a score key reruns only check and score
    a, b = _clone(origin, tmp_path / "a"), _clone(origin, tmp_path / "b")
    assert "Data and pipelines are up to date" in _sh(a, "dvc", "status")
    shares = {"exp-a": (a, "score.f1_floor=0.2"), "exp-b": (b, "score.f1_floor=0.3")}
    with ThreadPoolExecutor(len(shares)) as pool:
        cmds = [(m, "dvc", "exp", "run", "-n", name, "-S", s) for name, (m, s) in shares.items()]
        outs = list(pool.map(lambda cmd: _sh(*cmd), cmds))
    for out in outs:
        assert re.findall(r"Running stage '(\w+)'", out) == ["check", "score"], out
    headlines = {name: json.loads((m / "metrics" / "headline.json").read_text()) for name, (m, _) in shares.items()}

    # an unreachable DVC remote (a path under a regular file): exp push fails with DVC's error and
    # nothing local is lost; pushed again to the working remote, it goes through
    (tmp_path / "a-file").write_text("")
    _sh(a, "dvc", "remote", "add", "--local", "down", str(tmp_path / "a-file" / "store"))
    out = _sh(a, "dvc", "exp", "push", "-r", "down", "origin", "exp-a", fails=True)
    assert "ERROR: failed to push cache" in out, out
    assert "exp-a" in _sh(a, "dvc", "exp", "list")
    _sh(a, "dvc", "exp", "push", "origin", "exp-a")
    assert "Pushed experiment exp-b" in _sh(b, "dvc", "exp", "push", "origin", "exp-b")

    # machine C: a plain clone has no experiments; `dvc exp pull origin` brings every experiment
    # of the commit it is on, their outputs with them
    c = _clone(origin, tmp_path / "c", pull=False)
    assert "exp-" not in _sh(c, "dvc", "exp", "list")
    out = _sh(c, "dvc", "exp", "pull", "origin")
    assert "exp-a" in out and "exp-b" in out, out
    shown = _experiments(json.loads(_sh(c, "dvc", "exp", "show", "--json")))
    assert set(shown) == set(shares), shown
    for name, (_, setting) in shares.items():
        assert shown[name]["metrics"]["metrics/headline.json"]["data"] == headlines[name]
        floor = shown[name]["params"]["params.yaml"]["data"]["score"]["f1_floor"]
        assert f"score.f1_floor={floor}" == setting
    out = _sh(c, "tinycls", "pareto")
    assert "of 3 runs on the front" in out, out  # the baseline and both experiments
    rows = (c / "plots" / "pareto.csv").read_text().splitlines()
    branch = _sh(c, "git", "rev-parse", "--abbrev-ref", "HEAD").strip()
    assert sorted(r.split(",")[0] for r in rows[1:]) == sorted([*shares, branch])
    # B's outputs came with it: applied in C, nothing is out of date and nothing retrains
    _sh(c, "dvc", "exp", "apply", "exp-b")
    assert "Data and pipelines are up to date" in _sh(c, "dvc", "status")
