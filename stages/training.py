"""Shared by the stages that train a model (teacher, student): the model keys of a params
section, and one run of tinycls.train.fit logged through dvclive."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dvclive import Live

from stages.params import source, write_json
from tinycls.config import from_section
from tinycls.models import build_model, build_pretrained
from tinycls.train import TrainConfig, fit, seed_everything
from tinycls.transforms import IMAGENET_MEAN, IMAGENET_STD

MODEL_KEYS = ("arch", "pretrained", "weights", "input_size")


@dataclass(frozen=True)
class ModelParams:
    arch: str  # SOURCE:NAME, e.g. pytorchcv:shufflenet_g3_wd4 or timm:tf_efficientnetv2_b0
    pretrained: bool  # ImageNet weights: from `weights` when set, else the source's hub
    input_size: int  # px
    weights: str = ""  # local ImageNet weights file, for machines without network

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size: {self.input_size} must be >= 8.")


def split_section(
    name: str, section: dict[str, Any], other_keys: tuple[str, ...] = ()
) -> tuple[ModelParams, TrainConfig, dict[str, Any]]:
    """(model keys, loop keys, the `other_keys`) of a params section, each validated."""
    pick = lambda keys: {k: v for k, v in section.items() if k in keys}  # noqa: E731
    model = from_section(ModelParams, pick(MODEL_KEYS), source(name))
    rest = {k: v for k, v in section.items() if k not in MODEL_KEYS + other_keys}
    return model, from_section(TrainConfig, rest, source(name)), pick(other_keys)


def train_model(
    stage: str,
    m: ModelParams,
    cfg: TrainConfig,
    classes: list[str],
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    checkpoint: Path,
    live_dir: Path,
    metrics: Path,
    extra_metrics: dict[str, Any],
) -> dict[str, Any]:
    """Build (ImageNet weights first, so a missing file fails before training), fit, log, and
    write the stage's metrics; returns them."""
    seed_everything(cfg.seed)  # before the build: the seed fixes the initial weights too
    if m.pretrained:
        model = build_pretrained(m.arch, len(classes), Path(m.weights) if m.weights else None)
    else:
        model = build_model(m.arch, len(classes))
    meta = {
        "arch": m.arch,
        "arch_kwargs": {},
        "classes": classes,
        "input_size": m.input_size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "stage": stage,
    }
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:

        def log(row: dict[str, float]) -> None:
            for k, v in row.items():
                live.log_metric(k, v)
            live.next_step()

        result = fit(model, train, val, cfg, checkpoint, meta, log=log)
    out = {
        "val_f1": result.best_f1,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "device": result.device,
        "train_images": len(train[0]),
        **extra_metrics,
    }
    write_json(metrics, out)
    print(f"{stage}: best selection macro F1 {result.best_f1:.4f} at epoch {result.best_epoch} -> {checkpoint}")
    return out
