"""Shared by the benchmarks that run DVC experiments: shell calls, the clean-workspace guard,
unique names, and reading named experiments back from `dvc exp show` (with every stage's metrics
file from the experiment's commit)."""

import json
import subprocess
import time
from typing import Any

from benchmarks.results import WRITTEN


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def require_clean(benchmark: str, why: str) -> None:
    """Exit unless git's tracked files are unchanged (`why`: what the benchmark does to them), the
    results pages and the README aside: the benchmarks write them (`make bench` runs one after the other)."""
    status = sh("git", "status", "--porcelain", "--untracked-files=no").splitlines()
    if [ln for ln in status if not ln[3:].startswith(WRITTEN)]:
        raise SystemExit(f"benchmarks.{benchmark}: commit your changes first; {why}.")


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")  # DVC experiment names must be new


def run_queued(runs: dict[str, list[str]], benchmark: str) -> dict[str, str]:
    """Queue one experiment per entry of `runs` (key -> `-S` settings) from HEAD under a new
    name, run them one at a time in DVC's temporary workspaces and wait; returns {name: key}."""
    now = stamp()
    names = {f"{key}-{now}": key for key in runs}
    for name, key in names.items():
        sh("dvc", "exp", "run", "--queue", "-n", name, *[a for s in runs[key] for a in ("-S", s)])
    start = time.time()
    sh("dvc", "queue", "start", "-j", "1")
    while any(w in sh("dvc", "queue", "status") for w in ("Queued", "Running")):
        time.sleep(20)
    print(f"{benchmark}: {len(runs)} experiments in {(time.time() - start) / 60:.1f} min")
    print(sh("dvc", "queue", "status"))
    return names


def head() -> str:
    return sh("git", "rev-parse", "HEAD").strip()


def named(names: set[str] | None, rev: str = "HEAD") -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, metrics by file, params.yaml) of each finished experiment whose name is in `names`
    (None: every named one), among the experiments queued from commit `rev` (their baseline)."""
    found = []
    for attempt in range(3):  # a queued run that ends mid-call removes its temporary workspace: try again
        try:
            rows = json.loads(sh("dvc", "exp", "show", "--json", "--rev", rev))
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
            time.sleep(10)
    for row in rows:
        for exp in row.get("experiments") or []:
            run = exp["revs"][0]
            # queued and running experiments are listed too, a running one with its baseline's metrics
            if (exp.get("executor") or {}).get("state", "success") != "success":
                continue
            if run.get("name") and (names is None or run["name"] in names) and (run.get("data") or {}).get("metrics"):
                metrics = {f: m["data"] for f, m in run["data"]["metrics"].items()} | detail(run["rev"])
                found.append((run["name"], metrics, run["data"]["params"]["params.yaml"]["data"]))
    return found


def detail(rev: str) -> dict[str, Any]:
    """Every metrics/*.json of commit `rev` (an experiment's commit holds them: they are git-tracked
    outputs), by path: DVC shows metrics/headline.json alone, the stages' detail files are here."""
    files = sh("git", "ls-tree", "--name-only", rev, "metrics/").split()
    return {f: json.loads(sh("git", "show", f"{rev}:{f}")) for f in files if f.endswith(".json")}
