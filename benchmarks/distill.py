"""What distillation costs: seconds per student epoch without a teacher, with the teacher run on
every (randomly augmented) batch, and with teacher outputs cached once, before the first epoch
(on the unaugmented images: exact without random augmentation, the quick start's default
`kd.teacher_outputs: cached` with it).

Uses the quick start's prepared cache and trained teacher, so run `dvc repro` first; then, from
the repository root with the venv on PATH: `python -m benchmarks.distill`. Writes the table as its
block of docs/results/distill.md.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.results import page
from stages.params import CACHE, TEACHER
from tinycls.cache import load_classes, load_split
from tinycls.checkpoint import checkpoint_meta
from tinycls.device import resolve_device
from tinycls.distill import KDConfig, create_distiller
from tinycls.models import build_model
from tinycls.train import TrainConfig, fit, seed_everything


def epoch_times(
    arch: str, train, val, classes, size: int, epochs: int, kd: bool, augment: bool, outputs: str, device
) -> list[float]:
    seed_everything(0)
    model = build_model(arch, len(classes))
    meta = checkpoint_meta(arch, classes, size)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=128,
        device=device.type,
        hflip=augment,
        translate=0.1 if augment else 0.0,
        label_smoothing=0.1,
    )
    kd_cfg = KDConfig("true_label", 20.0, 0.3, teacher_outputs=outputs) if kd else None
    distiller = create_distiller(kd_cfg, {"teacher": TEACHER}, classes, meta["mean"], meta["std"], device)
    stamps = [time.perf_counter()]
    with tempfile.TemporaryDirectory() as tmp:
        fit(
            model,
            train,
            val,
            cfg,
            Path(tmp) / "s.pt",
            meta,
            distiller,
            log=lambda row: stamps.append(time.perf_counter()),
            progress=False,
        )
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", default="pytorchcv:shufflenet_g3_wd4")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    classes = load_classes(CACHE)
    train, val = load_split(CACHE, "train"), load_split(CACHE, "val")
    runs = {
        "no teacher (hflip + translate)": (False, True, "per_batch"),
        "teacher on every batch (hflip + translate)": (True, True, "per_batch"),
        "teacher outputs cached on the unaugmented images (hflip + translate; the default)": (True, True, "cached"),
        "no teacher, no random augmentation": (False, False, "per_batch"),
        "teacher outputs cached (no random augmentation: exact)": (True, False, "per_batch"),
    }
    with page("distill", title="what distillation costs per epoch") as emit:
        emit(
            f"{args.arch} {args.size}px, {len(train[0]):,} images/epoch, on {device.type}, "
            f"{torch.get_num_threads()} threads"
        )
        table = ["| run | epoch 1 s | later epochs s (mean) |", "|---|---|---|"]
        for name, (kd, augment, outputs) in runs.items():
            t = epoch_times(args.arch, train, val, classes, args.size, args.epochs, kd, augment, outputs, device)
            later = sum(t[1:]) / max(len(t) - 1, 1)
            table.append(f"| {name} | {t[0]:.1f} | {later:.1f} |")
            print(table[-1], flush=True)  # progress: the table comes whole at the end
        emit("\n".join(table))


if __name__ == "__main__":
    main()
