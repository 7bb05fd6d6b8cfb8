"""Shared by the stages that train a model (pretrain, teacher, assistant, student): the model
and distillation keys of a params section, and one run of tinycls.train.fit logged through
dvclive, optionally starting from a pretrained checkpoint and distilling from teachers."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dvclive import Live

from stages.params import TEACHER_OUTPUTS, source, write_json
from tinycls.checkpoint import checkpoint_meta
from tinycls.config import from_section, one_of
from tinycls.device import resolve_device
from tinycls.distill import load_teachers
from tinycls.losses import KDConfig
from tinycls.models import build_model
from tinycls.pretrain import transfer_pretrained
from tinycls.train import OUTPUT_MODES, TrainConfig, fit, seed_everything
from tinycls.weights import build_pretrained

MODEL_KEYS = ("arch", "pretrained", "weights", "input_size")


@dataclass(frozen=True)
class ModelParams:
    arch: str  # SOURCE:NAME, e.g. pytorchcv:shufflenet_g3_wd4 or timm:tf_efficientnetv2_b0
    pretrained: bool  # ImageNet weights: from `weights` when set, else the source's hub
    input_size: int  # px
    weights: str = ""  # local ImageNet weights file or package:NAME, for machines without network

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size: {self.input_size} must be >= 8.")
        if self.weights and not self.pretrained:
            raise ValueError(
                f"weights: {self.weights!r} is set but pretrained is false, so it would be ignored; "
                "set pretrained: true to start from it, or weights: ''."
            )


@dataclass(frozen=True)
class KDParams:
    """Distillation of a trained model (params.yaml [kd] for the student, [assistant].kd)."""

    mode: str  # none | vanilla | true_label
    temperature: float = 4.0
    alpha: float = 0.5  # weight of the model's own loss; 1 - alpha goes to the KL term
    teachers: list[str] = field(default_factory=lambda: ["teacher"])  # names in TEACHER_OUTPUTS
    weights: list[float] = field(default_factory=list)  # one per teacher; empty = equal
    teacher_outputs: str = "per_batch"  # per_batch | cached (tinycls.train.OUTPUT_MODES)

    def __post_init__(self) -> None:
        KDConfig(self.mode, self.temperature, self.alpha)  # validates the three
        one_of("teacher_outputs", self.teacher_outputs, OUTPUT_MODES)
        if not isinstance(self.teachers, list) or not self.teachers:
            raise ValueError(f"teachers: {self.teachers!r} must be a non-empty list, e.g. [teacher].")
        for name in self.teachers:
            if name not in TEACHER_OUTPUTS:
                raise ValueError(f"teachers: {name!r} is not one of {', '.join(TEACHER_OUTPUTS)}.")
        if len(set(self.teachers)) != len(self.teachers):
            raise ValueError(f"teachers: {self.teachers} lists a teacher twice; use weights instead.")
        if not isinstance(self.weights, list) or (self.weights and len(self.weights) != len(self.teachers)):
            raise ValueError(
                f"weights: {self.weights!r} must be empty (equal) or give one weight per teacher {self.teachers}."
            )
        if any(not isinstance(w, (int, float)) or isinstance(w, bool) or w <= 0 for w in self.weights):
            raise ValueError(f"weights: {self.weights} must all be numbers > 0.")

    @property
    def config(self) -> KDConfig:
        return KDConfig(self.mode, self.temperature, self.alpha)


def split_section(
    name: str, section: dict[str, Any], other_keys: tuple[str, ...] = ()
) -> tuple[ModelParams, TrainConfig, dict[str, Any]]:
    """(model keys, loop keys, the `other_keys`) of a params section, each validated."""
    pick = lambda keys: {k: v for k, v in section.items() if k in keys}  # noqa: E731
    model = from_section(ModelParams, pick(MODEL_KEYS), source(name))
    rest = {k: v for k, v in section.items() if k not in MODEL_KEYS + other_keys}
    return model, from_section(TrainConfig, rest, source(name)), pick(other_keys)


def _initialize(model: torch.nn.Module, arch: str, init: Path, allow_unmatched: bool) -> dict[str, Any]:
    """Copy a pretrained checkpoint's matching tensors into `model` (head re-initialized)."""
    try:
        ckpt = torch.load(init, map_location="cpu", weights_only=True)
        state = ckpt["state_dict"]
    except Exception as e:
        raise ValueError(
            f"{init}: not a readable checkpoint ({type(e).__name__}: {e}); rerun `dvc repro pretrain`."
        ) from e
    if ckpt.get("arch") != arch and not allow_unmatched:
        raise ValueError(
            f"{init}: pretrained {ckpt.get('arch')}, but this model is {arch}; rerun `dvc repro pretrain` "
            "(it pretrains student.arch), or set params.yaml [student].allow_unmatched_init: true to copy "
            "whatever fits."
        )
    t = transfer_pretrained(model, state, str(init), allow_none=allow_unmatched)
    print(
        f"init from {init} ({ckpt.get('arch')}): {t.transferred} tensors transferred, "
        f"{t.skipped} skipped, head {t.head} re-initialized"
    )
    return {
        "init": str(init),
        "init_arch": ckpt.get("arch"),
        "init_transferred": t.transferred,
        "init_skipped": t.skipped,
    }


def train_model(
    stage: str,
    m: ModelParams,
    cfg: TrainConfig,
    classes: list[str],
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    checkpoint: Path,
    live_dir: Path,
    metrics: Path | None,
    extra_metrics: dict[str, Any],
    kd: KDParams | None = None,
    init: Path | None = None,
    allow_unmatched_init: bool = False,
    live_prefix: str = "",
    resume_live: bool = False,
    model: torch.nn.Module | None = None,
    meta_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build (ImageNet weights first, so a missing file fails before training), start from
    `init` when given, load the kd teachers (checked against the classes), fit, log, and write
    the stage's metrics (when `metrics` is set); returns them. A stage that trains in phases
    logs each under its `live_prefix`, resuming the same dvclive run after the first.
    A `model` passed in (e.g. a compressed student) is fine-tuned as it is; `meta_extra` goes
    into the checkpoint (its arch_kwargs rebuild that model)."""
    seed_everything(cfg.seed)  # before the build: the seed fixes the initial weights too
    out: dict[str, Any] = {}
    if model is None and m.pretrained:
        model, report = build_pretrained(m.arch, len(classes), m.weights)
        if report is not None:
            print(f"{stage}: ImageNet weights {report.describe()}")
            out.update({"weights": m.weights, "weights_loaded": report.loaded, "weights_by": report.by})
    elif model is None:
        model = build_model(m.arch, len(classes))
    if init is not None:
        out.update(_initialize(model, m.arch, init, allow_unmatched_init))
    meta = checkpoint_meta(m.arch, classes, m.input_size, stage=stage)
    meta.update(meta_extra or {})  # a compressed student's arch_kwargs replace the empty ones in place
    teachers = None
    if kd is not None and kd.mode != "none":
        weights = kd.weights or [1.0] * len(kd.teachers)
        paths = [TEACHER_OUTPUTS[n] for n in kd.teachers]
        teachers = load_teachers(
            paths, classes, weights, kd.temperature, meta["mean"], meta["std"], resolve_device(cfg.device)
        )
        out.update(
            {
                "kd_mode": kd.mode,
                "kd_teachers": "+".join(kd.teachers),
                "kd_temperature": kd.temperature,
                "kd_alpha": kd.alpha,
            }
        )
    else:
        out["kd_mode"] = "none"
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=resume_live) as live:

        def log(row: dict[str, float]) -> None:
            for k, v in row.items():
                live.log_metric(live_prefix + k, v)
            live.next_step()

        result = fit(
            model,
            train,
            val,
            cfg,
            checkpoint,
            meta,
            kd=kd.config if kd else None,
            teachers=teachers,
            log=log,
            teacher_outputs=kd.teacher_outputs if kd else "per_batch",
        )
    out = {
        "val_f1": result.best_f1,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "device": result.device,
        "train_images": len(train[0]),
        "loss": cfg.loss,
        **out,
        "teacher_outputs": result.teacher_outputs,
        **extra_metrics,
    }
    if metrics is not None:
        write_json(metrics, out)
    print(f"{stage}: best selection macro F1 {result.best_f1:.4f} at epoch {result.best_epoch} -> {checkpoint}")
    return out
