"""Commands on one model or dataset: MACs, predictions, the score, presets, the quick-start data."""

from pathlib import Path

import typer

from tinycls.cli.app import _ints, app
from tinycls.errors import InputError


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
def predict(
    checkpoint: Path = typer.Argument(
        ..., help="a tinycls checkpoint (.pt, e.g. artifacts/student/model.pt) or its export (.onnx, ONNX Runtime)"
    ),
    image_dir: Path = typer.Argument(..., help="folder of images (searched recursively)"),
    out: Path = typer.Option(..., "--out", help="CSV to write: file, prediction, confidence"),
    device: str = typer.Option("auto", help="auto | cpu | cuda (a .onnx file runs on ONNX Runtime's CPU)"),
) -> None:
    """Predict every image under IMAGE_DIR with CHECKPOINT and write a CSV (streamed: memory does
    not grow with the folder)."""
    from tinycls.predict_folder import predict_folder

    n = predict_folder(checkpoint, image_dir, out, device)
    typer.echo(f"{n} predictions -> {out}")


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
