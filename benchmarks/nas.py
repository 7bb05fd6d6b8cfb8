"""What the architecture search costs and which sampler to use, on the quick start's cache.

`--samplers`: one fresh study per sampler (TPE, NSGA-II, random), each until `--trials` trained
trials, with a cheaper proxy (`--train-per-class`, `--epochs`), reporting the trained and pruned
trials, minutes, the best validation F1 and the hypervolume of the (F1, MACs) front (the area
it dominates between 0 MACs and the budget, F1 from 0, as a share of the budget x 1.0).

`--workers 1,2`: trials per hour with the params.yaml [nas] proxy, each worker count on a fresh
study for `--minutes` (the ratio shows whether more workers help on this machine's cores).

`--pipeline specs/nas.yaml`: the searched network trained by the pipeline (`dvc exp run -S
student.arch=nas:<spec>`, every other setting as committed) against the committed student
(ShuffleNetV1 x0.25 on the quick start): test macro F1, MACs, latency and the score, from
`dvc exp show --json`.

Run from the repository root after `dvc repro`:
`python -m benchmarks.nas --samplers tpe,nsga2,random --trials 40`,
`python -m benchmarks.nas --workers 1,2 --minutes 10` (both write only under a temporary folder),
`python -m benchmarks.nas --pipeline specs/nas.yaml` (adds a DVC experiment named nas-<file stem>).
Each writes its block of docs/results/nas.md, named after its flag and value (`samplers
tpe,nsga2,random`, `workers 1,2`, `pipeline specs/nas.yaml`).
"""

import argparse
import dataclasses
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from benchmarks.results import machine, page
from stages.params import CACHE
from tinycls.cli.app import _dvc
from tinycls.config import from_section
from tinycls.nas.config import NasConfig
from tinycls.nas.front import results
from tinycls.nas.search import search
from tinycls.pareto import runs


def hypervolume(found: list, budget: int) -> float:
    """Share of [0, budget] x [0, 1] that the (MACs, F1) front dominates (higher is better)."""
    front = [r for r in found if r.pareto]  # sorted by MACs, F1 rising
    area = 0.0
    for r, nxt in zip(front, [*front[1:], None], strict=True):
        area += r.val_f1 * ((nxt.macs if nxt else budget) - r.macs)
    return area / budget


def run(cfg: NasConfig, tmp: Path, name: str) -> dict:
    cfg = dataclasses.replace(cfg, study=name, storage=str(tmp / f"{name}.log"))
    t0 = time.perf_counter()
    study = search(cfg, CACHE, tmp)
    minutes = (time.perf_counter() - t0) / 60
    found = results(study)
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return {
        "trained": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "minutes": minutes,
        "best_f1": max((r.val_f1 for r in found), default=0.0),
        "hv": hypervolume(found, cfg.max_macs),
        "per_hour": states.count("COMPLETE") / minutes * 60,
    }


def pipeline(spec: str, emit: Callable[[str], None]) -> None:
    """Train `spec` through every stage as a DVC experiment; `emit` its row beside the committed one."""
    import json

    name = f"nas-{Path(spec).stem}"
    t0 = time.perf_counter()
    subprocess.run([_dvc(), "exp", "run", "--temp", "-n", name, "-S", f"student.arch=nas:{spec}"], check=True)
    minutes = (time.perf_counter() - t0) / 60
    show = json.loads(
        subprocess.run([_dvc(), "exp", "show", "--json"], capture_output=True, text=True, check=True).stdout
    )
    found = {r.name: r for r in runs(show)}
    base = next(r for n, r in found.items() if not n.startswith(("nas-", "exp-")) and r.arch != f"nas:{spec}")
    emit(f"`dvc exp run -n {name} -S student.arch=nas:{spec}`: {minutes:.1f} min")
    table = ["| student | MACs | test macro F1 | latency ms | score |", "|---|---:|---:|---:|---:|"]
    for r in (base, found[name]):
        ms = f"{r.latency_ms:.3f}" if r.latency_ms is not None else ""
        table.append(f"| {r.arch} ({r.name}) | {r.macs:,} | {r.f1:.4f} | {ms} | {r.score:.4f} |")
    emit("\n".join(table))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samplers", default="", help="comma-separated: tpe,nsga2,random")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--train-per-class", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workers", default="", help="comma-separated worker counts, e.g. 1,2")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--pipeline", default="", help="a spec file to train through the pipeline, e.g. specs/nas.yaml")
    a = ap.parse_args()
    base = from_section(NasConfig, yaml.safe_load(Path("params.yaml").read_text())["nas"], "params.yaml [nas]")
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    budget = f"budget {base.max_macs:,} MACs, space {base.space}"
    print(f"machine: {machine()}; commit {rev}; {budget}")
    if a.pipeline:
        with page("nas", f"pipeline {a.pipeline}", title="architecture search") as emit:
            pipeline(a.pipeline, emit)
    with tempfile.TemporaryDirectory() as tmp:
        if a.samplers:
            with page("nas", f"samplers {a.samplers}", title="architecture search") as emit:
                cfg = dataclasses.replace(
                    base,
                    trials=a.trials,
                    train_per_class=a.train_per_class,
                    epochs=a.epochs,
                    timeout_min=600.0,
                    workers=1,
                )
                rows = [
                    (s, run(dataclasses.replace(cfg, sampler=s), Path(tmp), f"sampler-{s}"))
                    for s in a.samplers.split(",")
                ]
                emit(
                    f"proxy: {a.train_per_class} images per class, {a.epochs} epochs; {a.trials} trained trials "
                    f"each; {budget}"
                )
                table = [
                    "| sampler | trained | pruned | minutes | best val F1 | hypervolume |",
                    "|---|---:|---:|---:|---:|---:|",
                ]
                for s, r in rows:
                    table.append(
                        f"| {s} | {r['trained']} | {r['pruned']} | {r['minutes']:.1f} | {r['best_f1']:.4f} "
                        f"| {r['hv']:.4f} |"
                    )
                emit("\n".join(table))
        if a.workers:
            with page("nas", f"workers {a.workers}", title="architecture search") as emit:
                rows = []
                for n in (int(v) for v in a.workers.split(",")):
                    cfg = dataclasses.replace(base, workers=n, timeout_min=a.minutes, trials=10_000)
                    rows.append((n, run(cfg, Path(tmp), f"workers-{n}")))
                emit(
                    f"proxy: {base.train_per_class} images per class, {base.epochs} epochs; {a.minutes:g} min "
                    f"each; {budget}"
                )
                table = [
                    "| workers | trained | pruned | failed | minutes | trials per hour | vs 1 worker |",
                    "|---:|---:|---:|---:|---:|---:|---:|",
                ]
                one = rows[0][1]["per_hour"]
                for n, r in rows:
                    table.append(
                        f"| {n} | {r['trained']} | {r['pruned']} | {r['failed']} | {r['minutes']:.1f} "
                        f"| {r['per_hour']:.0f} | {r['per_hour'] / one:.2f}x |"
                    )
                emit("\n".join(table))


if __name__ == "__main__":
    main()
