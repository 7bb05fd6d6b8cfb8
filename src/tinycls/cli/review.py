"""Commands that compare runs: `pareto` (F1 against cost over experiments) and `report`."""

from pathlib import Path

import typer

from tinycls.cli.app import _dvc, app


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
        raise typer.BadParameter(
            f"no experiment has metrics/headline.json with an F1{why} yet; `dvc repro` or `dvc queue start` "
            "(f1 is null where test/ is unlabelled and prepare.holdout_fraction is 0)."
        )
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
