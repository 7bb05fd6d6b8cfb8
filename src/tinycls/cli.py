"""`tinycls`: the library's tools beside the pipeline (MACs, predictions, the score, data)."""

import csv
import sys
from pathlib import Path

import typer

from tinycls.errors import InputError


class _Typer(typer.Typer):
    """Typer whose entry point prints an InputError (bad data, params or files) as a message,
    exit status 2 like typer's own usage errors; other exceptions keep their traceback (bugs)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except InputError as e:
            typer.echo(f"Error: {e}", err=True)
            sys.exit(2)


app = _Typer(
    help="Make image classifiers tiny. The pipeline runs with `dvc repro`; these "
    "commands measure, predict and score on their own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _ints(text: str, example: str, option: str | None = None) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: expected integers separated by commas, e.g. {example}", param_hint=option
        ) from None


@app.command()
def macs(
    arch: str = typer.Argument(..., help="SOURCE:NAME (timm:..., pytorchcv:...) or a checkpoint .pt"),
    size: int = typer.Option(None, help="input side in px (default: the checkpoint's)"),
    classes: int = typer.Option(9, help="number of classes (ignored for a checkpoint)"),
    keep_blocks: str = typer.Option(
        None, "--keep-blocks", help="layer pruning: blocks kept per stage, e.g. 2,5,2 (ShuffleNet's full [4,8,4])"
    ),
    block_selection: str = typer.Option("first", help="which blocks stay: first | weight_std"),
    split_groups: int = typer.Option(1, help="group decomposition: grouped convs get this many times more groups"),
    channel_ratio: float = typer.Option(0.0, help="Torch-Pruning channel pruning: share of channels removed"),
    target_macs: int = typer.Option(0, help="channel pruning down to at most this many MACs"),
) -> None:
    """Count MACs and parameters by the competition's rules (ptflops 0.6.4 semantics), of the
    model as it is or compressed as the compress stage would (params.yaml [compress]).

    Prints the parameter count, then the MACs alone on the last line.
    """
    from tinycls.checkpoint import load_checkpoint
    from tinycls.compress import compress
    from tinycls.macs import count_macs
    from tinycls.models import build_model

    keep = _ints(keep_blocks, "2,5,2") if keep_blocks else None
    if Path(arch).suffix == ".pt":
        model, meta = load_checkpoint(Path(arch))
        size = size or meta["input_size"]
    else:
        if size is None:
            raise typer.BadParameter("--size is required with a model name", param_hint="--size")
        model = build_model(arch, classes)
    if keep or split_groups != 1 or channel_ratio or target_macs:
        try:
            model, _ = compress(model, size, keep, block_selection, split_groups, channel_ratio, target_macs, name=arch)
        except InputError as e:
            raise typer.BadParameter(str(e)) from None
    n_macs, n_params = count_macs(model, size)
    typer.echo(f"params {n_params}")
    typer.echo(n_macs)


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


def _dvc() -> str:
    """DVC of this environment (beside this Python when the venv is not on PATH)."""
    import shutil
    import sys

    return shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")


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
def pareto(
    source: Path = typer.Option(None, "--from", help="saved `dvc exp show --json` output (default: run it)"),
    all_commits: bool = typer.Option(False, "--all-commits", "-A", help="experiments of every commit, not only HEAD"),
    out: Path = typer.Option(Path("plots/pareto.png"), "--out", help="PNG to write"),
    csv_out: Path = typer.Option(Path("plots/pareto.csv"), "--csv", help="CSV to write (for `dvc plots show`)"),
    x: str = typer.Option("macs", "--x", help="cost on the x axis: macs | latency (ONNX Runtime ms) | size (bytes)"),
) -> None:
    """F1 against MACs (or measured latency, or ONNX size) of every finished experiment, the
    Pareto front marked: a table, a PNG and a CSV
    (`dvc plots show plots/pareto.csv --template scatter -x macs -y f1`)."""
    import json
    import subprocess

    from tinycls.pareto import AXES, mark_front, plot, runs, to_markdown, write_csv

    if x not in AXES:
        raise typer.BadParameter(f"{x!r}: expected one of {', '.join(AXES)}", param_hint="--x")

    if source is not None:
        if not source.is_file():
            raise typer.BadParameter(f"{source}: no such file", param_hint="--from")
        text = source.read_text()
    else:
        cmd = [_dvc(), "exp", "show", "--json"] + (["-A"] if all_commits else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise typer.BadParameter(f"`{' '.join(cmd)}` failed: {r.stderr.strip()[:300]}; run it in the repository.")
        text = r.stdout
    try:
        found = mark_front(runs(json.loads(text)), x)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise typer.BadParameter(f"not `dvc exp show --json` output ({type(e).__name__}: {e})") from None
    if not found:
        why = "" if x == "macs" else f" with {x} (runs before the export stage have none)"
        raise typer.BadParameter(f"no experiment has metrics/headline.json{why} yet; `dvc repro` or `dvc queue start`.")
    write_csv(found, csv_out)
    plot(found, out, x)
    typer.echo(to_markdown(found))
    typer.echo(f"\n{sum(r.pareto for r in found)} of {len(found)} runs on the front; {out}, {csv_out}")


@app.command()
def report(
    target: str = typer.Argument("workspace", help="experiment name or commit (default: the workspace)"),
    baseline: str = typer.Option("HEAD", help="what it is compared with: a commit, branch or experiment"),
    out: Path = typer.Option(None, "--out", help="folder for report.md and its images (default: reports/TARGET)"),
) -> None:
    """An experiment against a baseline as Markdown (printed, and written with its images): the
    headline with deltas, the params that changed, per-class F1 deltas, the confusion matrix and F1
    against MACs as PNG, the curves as HTML. Post it on a pull request with CML:
    `cml comment create reports/TARGET/report.md`."""
    import json
    import re

    from tinycls.report import collect, dvc_runner, write

    dvc = dvc_runner(_dvc())
    r = collect(dvc, baseline, target)
    folder = out or Path("reports") / re.sub(r"[^A-Za-z0-9_.-]+", "-", target)
    show = json.loads(dvc(["exp", "show", "--json", "--rev", baseline]) or "[]")
    path = write(r, dvc, folder, show)
    typer.echo(path.read_text())
    typer.echo(f"written: {path} (images beside it)", err=True)


@app.command()
def nas(
    trials: int = typer.Option(None, help="trained trials the study should hold (default: params.yaml nas.trials)"),
    workers: int = typer.Option(None, help="processes on this machine sharing the study (nas.workers)"),
    storage: str = typer.Option(
        None, help="journal file path, or an RDB URL such as postgresql://user:pw@host/db (nas.storage)"
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
    A rerun continues the study; --workers N shares it between N processes."""
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


@app.command()
def predict(
    checkpoint: Path = typer.Argument(
        ..., help="a tinycls checkpoint (.pt, e.g. artifacts/student/model.pt) or its export (.onnx, ONNX Runtime)"
    ),
    image_dir: Path = typer.Argument(..., help="folder of images (searched recursively)"),
    out: Path = typer.Option(..., "--out", help="CSV to write: file, prediction, confidence"),
    device: str = typer.Option("auto", help="auto | cpu | cuda (a .onnx file runs on ONNX Runtime's CPU)"),
) -> None:
    """Predict every image under IMAGE_DIR with CHECKPOINT and write a CSV."""
    import torch

    from tinycls.data import load_folder

    if checkpoint.suffix == ".onnx":
        from tinycls.onnx_runtime import onnx_logits, read_metadata, session

        meta = read_metadata(checkpoint)
        files, images = load_folder(image_dir, meta["cache_size"])
        probs = torch.from_numpy(onnx_logits(session(checkpoint), meta, images)).softmax(1)
    else:
        from tinycls.checkpoint import load_checkpoint
        from tinycls.device import resolve_device
        from tinycls.predict import predict_checkpoint

        dev = resolve_device(device)
        model, meta = load_checkpoint(checkpoint, dev)
        # as the pipeline: square-pad and resize to the cache's side, then (in predict_checkpoint) to the model's
        files, images = load_folder(image_dir, meta.get("cache_size", meta["input_size"]))
        probs = predict_checkpoint(model, meta, images, dev).softmax(1)
    conf, pred = probs.max(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "prediction", "confidence"])
        for path, c, p in zip(files, pred.tolist(), conf.tolist(), strict=True):
            w.writerow([path.relative_to(image_dir).as_posix(), meta["classes"][c], f"{p:.6f}"])
    typer.echo(f"{len(files)} predictions -> {out}")


@app.command()
def score(
    macs: int = typer.Option(..., help="MACs of the model (see `tinycls macs`)"),
    f1: float = typer.Option(..., help="macro F1 in [0, 1]"),
    baseline_macs: int = typer.Option(13_863_553, help="MACs of the reference model"),
    baseline_f1: float = typer.Option(0.8365, help="macro F1 of the reference model"),
    f1_floor: float = typer.Option(0.5, help="below this F1 the F1 part is 1.0"),
) -> None:
    """The competition score (lower is better) from MACs and macro F1; the score is the last line."""
    from tinycls.score import competition_score

    s = competition_score(macs, f1, baseline_macs, baseline_f1, f1_floor)
    typer.echo(f"score_macs {s['score_macs']:.4f}\nscore_f1 {s['score_f1']:.4f}")
    typer.echo(f"{s['score']:.4f}")


@app.command()
def preset(
    name: str = typer.Argument(..., help="a file in presets/ without .yaml (e.g. photos), or a YAML path"),
    params: Path = typer.Option(Path("params.yaml"), help="the params file to change"),
) -> None:
    """Apply a preset (a partial params.yaml) to params.yaml, comments kept; prints each change."""
    from tinycls.presets import apply, changes_of, preset_path

    path = preset_path(name)
    lines = apply(changes_of(path), params, str(path))
    typer.echo("\n".join(lines) if lines else f"{params}: already has every value of {path}")


@app.command("fetch-fashion-mnist")
def fetch_fashion_mnist(
    out: Path = typer.Argument(Path("data/fashion_mnist"), help="target folder"),
    source: Path = typer.Option(None, help="folder with the four IDX files"),
    download_root: Path = typer.Option(Path(".cache/torchvision"), help="where torchvision downloads to"),
) -> None:
    """Materialize the quick-start dataset as PNG files (byte-identical from any source)."""
    from tinycls.fashion_mnist import materialize

    n = materialize(out, source, download_root)
    typer.echo(f"{out}: {'wrote ' + str(n) + ' images' if n else 'already complete'}")


if __name__ == "__main__":
    app()
