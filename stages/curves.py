"""Shared by the stages that sometimes train nothing (pretrain, assistant, compress): curves
files that load in `dvc plots` without a row. Its own module, so that a change here reruns
those stages alone, not the teacher and student."""

from pathlib import Path

from stages.runner import primary, write_json

# what stages.training.live_log writes for a training run: lr, train loss, val F1 and loss
CURVES = {"lr.tsv": "lr", "train/loss.tsv": "loss", "val/f1.tsv": "f1", "val/loss.tsv": "loss"}


def no_curves(live_dir: Path, status: dict) -> None:
    """A stage that trains nothing this time (assistant not listed, compression off): its declared
    curves folder gets dvclive's files with a header and no rows, so `dvc plots show` and
    `dvc plots diff` draw nothing for it instead of warning that the folder failed to load (git
    keeps no empty folder), and `status` in live_dir/metrics.json says why."""
    if not primary():  # torchrun's other ranks write nothing
        return
    for name, column in CURVES.items():
        path = live_dir / "plots" / "metrics" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"step\t{column}\n")
    write_json(live_dir / "metrics.json", status)
