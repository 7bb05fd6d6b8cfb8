"""Commands that choose a network: `search` (families by MACs), `queue` (train a shortlist), `nas`."""

import csv
from pathlib import Path

import typer

from tinycls.cli.app import _dvc, _ints, app
from tinycls.errors import InputError


@app.command()
def search(
    archs: str = typer.Option(None, "--archs", help="comma-separated SOURCE:NAMEs (default: the competition's seven)"),
    sizes: str = typer.Option("64,72,80,88,96", help="comma-separated input sides in px"),
    classes: int = typer.Option(9, help="number of classes"),
    budget: int = typer.Option(None, help="keep only candidates with at most this many MACs"),
    out: Path = typer.Option(None, "--out", help="also write the table as CSV here"),
    latency: bool = typer.Option(
        False, "--latency", help="also export each candidate to ONNX, time it in ONNX Runtime (batch 1, 1 thread)"
    ),
) -> None:
    """MACs and params of candidate architectures x input sizes, no training; marks the sizes
    just before a MACs jump (one more pixel costing over 10%). With --latency, the measured
    latency and its rank beside the MACs rank: fewer MACs is not always faster."""
    from tinycls.families import CANDIDATES, to_markdown, to_records
    from tinycls.families import search as run

    size_list = _ints(sizes, "64,72,80", "--sizes")
    arch_list = [a.strip() for a in archs.split(",")] if archs else list(CANDIDATES)
    try:
        rows = run(arch_list, size_list, classes, budget, latency)
    except InputError as e:
        raise typer.BadParameter(str(e)) from None
    shown = [r for r in rows if r.within_budget]
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        records = to_records(shown)
        with open(out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["arch"])
            w.writeheader()
            w.writerows(records)
    typer.echo(to_markdown(shown))
    if budget is not None:
        typer.echo(f"\n{len(shown)} of {len(rows)} candidates within {budget:,} MACs")


@app.command()
def queue(
    candidates: Path = typer.Argument(..., help="CSV of `tinycls search --out` (columns arch, size), shortlisted"),
    epochs: int = typer.Option(2, help="student epochs per candidate: a brief run to rank them"),
    prefix: str = typer.Option("cand-", help="experiment names start with this"),
    set_: list[str] = typer.Option(None, "--set", "-S", help="more params for every candidate, e.g. kd.mode=vanilla"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the commands, queue nothing"),
) -> None:
    """Queue one DVC experiment per candidate (student.arch and student.input_size from the CSV,
    compression off); then `dvc queue start`, and `tinycls pareto` once they are done."""
    import shlex
    import subprocess

    from tinycls.pareto import queue_commands

    if not candidates.is_file():
        raise typer.BadParameter(f"{candidates}: no such file; write one with `tinycls search --out {candidates}`.")
    with open(candidates, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        cmds = queue_commands(rows, epochs, prefix, set_ or [])
    except InputError as e:
        raise typer.BadParameter(f"{candidates}: {e}") from None
    for cmd in cmds:
        typer.echo(shlex.join(cmd))
        if not dry_run:
            subprocess.run([_dvc(), *cmd[1:]], check=True)
    if not dry_run:
        typer.echo(f"{len(cmds)} experiments queued: `dvc queue start -j 1`, `dvc queue status`, then `tinycls pareto`")


@app.command()
def nas(
    trials: int = typer.Option(None, help="trained trials the study should hold (default: params.yaml nas.trials)"),
    workers: int = typer.Option(None, help="processes on this machine sharing the study (nas.workers)"),
    storage: str = typer.Option(
        None,
        help="journal file path, or an RDB URL: postgresql://user@host/db, password in ~/.pgpass (nas.storage)",
    ),
    study: str = typer.Option(None, help="study name (nas.study)"),
    timeout_min: float = typer.Option(None, "--timeout-min", help="no new trial after this many minutes"),
    params: Path = typer.Option(Path("params.yaml"), help="file with the nas: section (its defaults when absent)"),
    cache: Path = typer.Option(Path("artifacts/prepare"), help="the prepare stage's cache (`dvc repro prepare`)"),
    out: Path = typer.Option(Path("specs/nas.yaml"), "--out", help="where the chosen spec goes"),
    out_dir: Path = typer.Option(Path("artifacts/nas"), help="journal, trials.csv, pareto.md, the front's specs"),
    plots: Path = typer.Option(Path("plots"), help="nas_pareto.png and nas_pareto.csv go here"),
) -> None:
    """Search networks under a MACs budget with Optuna (the competition template's space):
    trials over params.yaml nas.max_macs are pruned before training, the others train briefly
    on the prepared cache; the study keeps (validation F1, MACs). Prints the Pareto front and
    writes the best-F1 network of it to --out for `dvc exp run -S student.arch=nas:<out>`.
    A rerun continues the study; --workers N shares it between N processes. The network of a
    trial whose worker died is trained again by another worker (docs/search.md)."""
    import dataclasses
    import time

    import yaml

    from tinycls.config import from_section
    from tinycls.nas.config import NasConfig
    from tinycls.nas.front import to_markdown, write_outputs
    from tinycls.nas.search import search

    section: dict = {}
    if params.is_file():
        loaded = yaml.safe_load(params.read_text()) or {}
        section = loaded.get("nas") or {} if isinstance(loaded, dict) else {}
    cfg = from_section(NasConfig, section, f"{params} [nas]")
    given = {"trials": trials, "workers": workers, "storage": storage, "study": study, "timeout_min": timeout_min}
    try:
        cfg = dataclasses.replace(cfg, **{k: v for k, v in given.items() if v is not None})
    except InputError as e:
        raise typer.BadParameter(str(e)) from None
    t0 = time.perf_counter()
    found_study = search(cfg, cache, out_dir)
    found, best = write_outputs(found_study, cfg, out_dir, plots, out)
    minutes = (time.perf_counter() - t0) / 60
    states = [t.state.name for t in found_study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in dict.fromkeys(states))
    typer.echo(f"\nstudy {cfg.study!r}: {counts or 'no trials'}; this run {minutes:.1f} min")
    if best is None:
        raise InputError(
            f"study {cfg.study!r}: no trained trial yet; raise timeout_min or max_macs (params.yaml [nas])."
        )
    typer.echo(to_markdown(found))
    typer.echo(
        f"\nchosen: trial {best.number}, val F1 {best.val_f1:.4f}, {best.macs:,} MACs at {best.input_size} px "
        f"-> {out}\n"
        f"front: {out_dir / 'pareto.md'}, {out_dir / 'specs'}/, {plots / 'nas_pareto.png'}\n"
        f"train it: dvc exp run -S student.arch=nas:{out} -S student.input_size={best.input_size}"
    )
