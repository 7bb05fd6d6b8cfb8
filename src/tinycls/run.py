"""One training run of a model, as every training stage makes it: build it (ImageNet weights
first, so a missing file fails before training), start from a pretrained checkpoint, distil
from teachers, fit, and return the metrics. Logging goes through a callback: the library knows
no DVC."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tinycls import distributed
from tinycls.cache import Split
from tinycls.checkpoint import checkpoint_meta
from tinycls.device import resolve_device
from tinycls.distill import KDConfig, create_distiller
from tinycls.errors import InputError
from tinycls.macs import check_budget
from tinycls.models import arch_kwargs, build_model
from tinycls.pretrain import transfer_pretrained
from tinycls.train import TrainConfig, fit, seed_everything
from tinycls.weights import build_pretrained


@dataclass(frozen=True)
class ModelConfig:
    """The model keys of a params section (arch, pretrained, input_size, weights)."""

    arch: str  # SOURCE:NAME, e.g. pytorchcv:shufflenet_g3_wd4, timm:tf_efficientnetv2_b0 or nas:specs/x.yaml
    pretrained: bool  # ImageNet weights: from `weights` when set, else the source's hub
    input_size: int  # px
    weights: str = ""  # local ImageNet weights file or package:NAME, for machines without network
    max_macs: int = 0  # > 0: a budget; a network over it is an error before training

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise InputError(f"input_size: {self.input_size} must be >= 8.")
        if isinstance(self.max_macs, bool) or not isinstance(self.max_macs, int) or self.max_macs < 0:
            raise InputError(f"max_macs: {self.max_macs!r} must be a whole number >= 0 (0 = no budget).")
        if self.weights and not self.pretrained:
            raise InputError(
                f"weights: {self.weights!r} is set but pretrained is false, so it would be ignored; "
                "set pretrained: true to start from it, or weights: ''."
            )
        if self.arch.startswith("nas:"):  # the spec file, read and checked at this input size
            from tinycls.specnet import check_input, load_spec

            if self.pretrained:
                raise InputError(f"arch {self.arch}: a spec network has no ImageNet weights; set pretrained: false.")
            check_input(load_spec(self.arch.partition(":")[2]), self.input_size, self.arch)


@dataclass(frozen=True)
class Start:
    """Where a run's weights start. By default the model is built (with ImageNet weights when its
    ModelConfig asks). `init`: then copy a pretrained checkpoint's matching tensors into it (one of
    another architecture only with `allow_unmatched`). `model`: fine-tune this model as it is (e.g. a
    compressed student) instead, with `meta` in its checkpoint (its arch_kwargs rebuild that model)."""

    init: Path | None = None
    allow_unmatched: bool = False
    model: torch.nn.Module | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def initialize(
    model: torch.nn.Module, arch: str, init: Path, allow_unmatched: bool, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Copy a pretrained checkpoint's matching tensors into `model` (head re-initialized); the
    counts, as metrics.

    Raises:
        ValueError: an unreadable checkpoint, or one of another architecture unless allowed.
    """
    try:
        ckpt = torch.load(init, map_location="cpu", weights_only=True)
        state = ckpt["state_dict"]
    except Exception as e:
        raise InputError(
            f"{init}: not a readable checkpoint ({type(e).__name__}: {e}); rerun `dvc repro pretrain`."
        ) from e
    same_spec = spec is None or (ckpt.get("arch_kwargs") or {}).get("spec") == spec  # a nas: name is a path
    if (ckpt.get("arch") != arch or not same_spec) and not allow_unmatched:
        raise InputError(
            f"{init}: pretrained {ckpt.get('arch')}{'' if same_spec else ' from another spec'}, but this model is "
            f"{arch}; rerun `dvc repro pretrain` "
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
    m: ModelConfig,
    cfg: TrainConfig,
    data: Split,
    checkpoint: Path,
    *,
    start: Start | None = None,
    kd: KDConfig | None = None,
    teachers: Mapping[str, Path] | None = None,
    log: Callable[[dict[str, float]], None] | None = None,
    resume: Path | None = None,
) -> dict[str, Any]:
    """Build (or take), initialize, distil and fit one model; its metrics.

    Args:
        stage: recorded in the checkpoint and printed.
        data: the classes, training and selection sets.
        checkpoint: where the best weights go.
        start: where the weights start (Start: built, a pretrained checkpoint, or a given model).
        kd, teachers: what to distil from, and each teacher's checkpoint (tinycls.distill.create_distiller).
        log: called once per epoch (tinycls.train.fit).
        resume: the fit's resume state file (tinycls.train.fit): an interrupted run continues.

    Raises:
        ValueError / FileNotFoundError: bad weights, init checkpoint or teachers, before training.
    """
    seed_everything(cfg.seed)  # before the build: the seed fixes the initial weights too
    out: dict[str, Any] = {}
    start = start or Start()
    model, recorded, classes = start.model, {}, data.classes
    if model is None and m.pretrained:
        model, report = build_pretrained(m.arch, len(classes), m.weights)
        if report is not None:
            print(f"{stage}: ImageNet weights {report.describe()}")
            out.update({"weights": m.weights, "weights_loaded": report.loaded, "weights_by": report.by})
    elif model is None:
        recorded = arch_kwargs(m.arch)  # a nas: spec, read once: built and recorded alike
        model = build_model(m.arch, len(classes), **recorded)
    if m.max_macs:
        check_budget(model, m.input_size, m.max_macs, f"{stage} {m.arch}")
    if start.init is not None:
        out.update(initialize(model, m.arch, start.init, start.allow_unmatched, recorded.get("spec")))
    # a compressed student's arch_kwargs replace the empty ones in place
    # cache_size: predict square-pads new images to the training images' side, then resizes as here
    extra = {"stage": stage, "cache_size": int(data.train[0].shape[1]), **start.meta}
    if start.model is None:  # a nas: network records its spec, so the checkpoint rebuilds without the file
        extra["arch_kwargs"] = recorded
    meta = checkpoint_meta(m.arch, classes, m.input_size, **extra)
    device = distributed.setup(resolve_device(cfg.device))  # under torchrun, this rank's GPU: its teachers' too
    distiller = create_distiller(kd, teachers or {}, classes, meta["mean"], meta["std"], device)
    if kd is not None and kd.mode != "none":
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
    result = fit(model, data.train, data.val, cfg, checkpoint, meta, distiller, log=log, resume=resume)
    print(f"{stage}: best selection macro F1 {result.best_f1:.4f} at epoch {result.best_epoch} -> {checkpoint}")
    return {
        "val_f1": result.best_f1,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "device": result.device,
        "train_images": len(data.train[0]),
        "loss": cfg.loss,
        **out,
        "teacher_outputs": result.teacher_outputs,
    }
