"""Fresh-clone `make run`, side by side: each commit cloned into its own folder, its venv built by
`make setup` (not timed: docs/benchmarks.md gives set-up separately), then `make run` timed (writing the
70,000 PNG files, filling the DVC cache for data/, and every stage of `dvc repro`), then checked:
`git status` and `dvc status` clean means the run reproduced the commit's dvc.lock and metrics
exactly, latency and peak memory aside: they are measured (the export stage's), differ a little
on every run, and with them the hashes of metrics/export.json and metrics/score.json in
dvc.lock. The first commit is the reference for the ratio (machines of the same kind differ by
2-3x in speed; the ratio between commits measured on one machine is what compares).

Run from the repository root: `python -m benchmarks.fresh_clone [--revs d3912fb,HEAD]
[--workdir DIR]`. Commits run one after the other (never two torch jobs at once). About 30 min
for two commits on a 2-core CPU. The clones stay in DIR (each about 7 GB) until you remove them;
`--reuse` runs again in existing clones after `git clean` (keeping their .venv/). Writes the
commits' table and the last commit's stage table as its block of docs/results/fresh_clone.md, and
the stage table as the README's "Current results" block when that run reproduced its commit.
"""

import argparse
import json
import subprocess
import time
from pathlib import Path

import yaml

from benchmarks.experiments import sh
from benchmarks.pipeline import results, steady
from benchmarks.results import header, page, write_block

README = Path("README.md")  # its "Current results": the last commit's stage table, the same block name

TIMED = ("metrics/export.json", "metrics/score.json", "metrics/headline.json")  # hold measured latency, memory


def _committed(folder: Path, path: str) -> str:
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=folder, capture_output=True, text=True).stdout


def _lock_without_timed(text: str) -> dict:
    """dvc.lock with the hashes of the TIMED files removed (as outputs and as dependencies)."""
    lock = yaml.safe_load(text) or {}
    for stage in lock.get("stages", {}).values():
        for key in ("deps", "outs"):
            stage[key] = [e if e.get("path") not in TIMED else {"path": e["path"]} for e in stage.get(key, [])]
    return lock


def reproduced(folder: Path) -> bool:
    """git and dvc status clean, but for measured latency/memory values (and their hashes)."""
    if subprocess.run([".venv/bin/dvc", "status", "-q"], cwd=folder).returncode != 0:
        return False
    status = subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True).stdout
    changed = [line[3:] for line in status.splitlines()]
    if any(path not in (*TIMED, "dvc.lock") for path in changed):
        return False
    for path in TIMED:
        if steady(json.loads(_committed(folder, path))) != steady(json.loads((folder / path).read_text())):
            return False
    return _lock_without_timed(_committed(folder, "dvc.lock")) == _lock_without_timed((folder / "dvc.lock").read_text())


def prepare_clone(repo: Path, rev: str, folder: Path, reuse: bool) -> None:
    if reuse and (folder / ".git").is_dir():
        subprocess.run(["git", "clean", "-xdfq", "-e", ".venv"], cwd=folder, check=True)
        subprocess.run(["git", "fetch", "-q", str(repo), rev], cwd=folder, check=True)
        subprocess.run(["git", "checkout", "-q", "--force", "FETCH_HEAD"], cwd=folder, check=True)
    else:
        if folder.exists():
            raise SystemExit(f"{folder} exists: remove it, or pass --reuse to run in it again.")
        subprocess.run(["git", "clone", "-q", str(repo), str(folder)], check=True)
        subprocess.run(["git", "checkout", "-q", rev], cwd=folder, check=True)
    subprocess.run(["make", "setup"], cwd=folder, check=True, stdout=subprocess.DEVNULL)


def timed_run(folder: Path, log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(["make", "run"], cwd=folder, check=True, stdout=out, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--revs", default="d3912fb,HEAD", help="commits, comma-separated; the first is the reference")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/tinycls-fresh-clone"))
    ap.add_argument("--reuse", action="store_true", help="run again in existing clones (git clean, keep .venv/)")
    args = ap.parse_args()
    repo = Path.cwd()
    args.workdir.mkdir(parents=True, exist_ok=True)
    line = header()  # the README block's header line: this run's date, machine, commit and command
    with page("fresh_clone", title="fresh-clone `make run`") as emit:
        rows = []
        for rev in args.revs.split(","):
            full = sh("git", "rev-parse", rev).strip()  # git fetch takes full hashes only
            commit = full[:7]
            folder = args.workdir / commit
            prepare_clone(repo, full, folder, args.reuse)
            wall = timed_run(folder, args.workdir / f"{commit}.log")
            score = json.loads((folder / "metrics/score.json").read_text())
            rows.append((commit, wall, reproduced(folder), score["f1"], score["score"]))
            print(f"{commit}: make run {wall:.0f} s", flush=True)
        table = [
            "| commit | fresh-clone `make run` | ratio to the first | git, dvc status clean (latency aside) "
            "| test F1 | score |",
            "|---|---|---|---|---|---|",
        ]
        for commit, wall, clean, f1, score in rows:
            minutes, seconds = divmod(round(wall), 60)
            ratio = wall / rows[0][1]
            same = "yes" if clean else "no"
            table.append(f"| {commit} | {minutes} min {seconds} s | {ratio:.2f} | {same} | {f1:.4f} | {score:.4f} |")
        emit("\n".join(table))
        took = f"A fresh clone's `make run` took {minutes} min {seconds} s; the pipeline, as its metrics/ record it:"
        metrics = {p.stem: json.loads(p.read_text()) for p in sorted((folder / "metrics").glob("*.json"))}
        stages = ["| stage | result |", "|---|---|", *(f"| `{k}` | {v} |" for k, v in results(metrics).items())]
        emit(took)
        emit("\n".join(stages))
    if README.is_file() and rows[-1][2]:  # the README shows the last commit's run when it reproduced
        write_block(README, "fresh_clone", "readme", [line, took, "\n".join(stages)])


if __name__ == "__main__":
    main()
