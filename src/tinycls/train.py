"""The one training loop every stage uses: optimizer, schedule, AMP, seeding, progress bar,
per-epoch logging, best checkpoint by validation macro F1, a usable checkpoint on Ctrl-C, and a
resume state after every epoch that an interrupted fit continues from, to the same result.
"""

import copy
import hashlib
import json
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch import nn
from tqdm import tqdm

from tinycls.checkpoint import save_checkpoint
from tinycls.config import one_of
from tinycls.device import DEVICES, resolve_device
from tinycls.distill import Distiller, Teaching, teaching
from tinycls.errors import InputError
from tinycls.losses import LOSSES, student_loss
from tinycls.predict import predict_checkpoint
from tinycls.rows import Rows
from tinycls.score import macro_f1
from tinycls.transforms import apply_views, augment, mix_targets, partner_pixels, to_input

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle")

# criterion(logits (B, K), targets (B,) or (B, K), inputs (B, 3, H, W)) -> scalar loss: an
# override of the configured loss (tests use it to watch the batches).
Criterion = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the loop; a stage builds it from its params.yaml section."""

    epochs: int
    batch_size: int
    optimizer: str = "adamw"
    lr: float = 3.0e-3
    weight_decay: float = 5.0e-4
    momentum: float = 0.9  # SGD only
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    hflip: bool = True
    translate: float = 0.1  # max random shift, fraction of the side
    zoom: float = 1.0  # < 1: each view a crop of a share of the side drawn from [zoom, 1]; 1 = off
    mix: float = 0.0  # share of images blended with another (mixup, Beta(1, 1)), labels alike; 0 = off
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision, CUDA only
    eval_batch_size: int = 512
    cutmix_prob: float = 0.0  # share of batches mixed by random-box CutMix (timm's Mixup)
    cutmix_alpha: float = 1.0  # Beta(alpha, alpha) draws the box's area
    ema_decay: float = 0.0  # EMA of weights (timm's ModelEmaV3) evaluated and saved; 0 = off
    loss: str = "ce"  # ce | focal | f1_focal (tinycls.losses.student_loss)
    focal_gamma: float = 2.0  # focal and f1_focal
    f1_weight: float = 0.6  # f1_focal: weight of the soft-F1 part (focal gets the rest)
    # NHWC weights (and teachers): oneDNN's and cuDNN's faster convolutions, measured 1.4x (student)
    # to 2x (EfficientNet-Lite0 teacher) per CPU training step; false for a model whose code needs NCHW
    channels_last: bool = True

    def __post_init__(self) -> None:
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("device", self.device, DEVICES)
        one_of("loss", self.loss, LOSSES)
        if self.focal_gamma < 0:
            raise InputError(f"focal_gamma: {self.focal_gamma} must be >= 0.")
        if not 0.0 <= self.f1_weight <= 1.0:
            raise InputError(f"f1_weight: {self.f1_weight} must be in [0, 1].")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: {getattr(self, name)} must be >= 1.")
        if self.lr <= 0:
            raise InputError(f"lr: {self.lr} must be > 0.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"label_smoothing: {self.label_smoothing} must be in [0, 1).")
        if not 0.0 <= self.translate < 0.5:
            raise InputError(f"translate: {self.translate} must be in [0, 0.5).")
        if not 0.0 < self.zoom <= 1.0:
            raise InputError(f"zoom: {self.zoom} must be in (0, 1] (1 = no zoom).")
        if not 0.0 <= self.mix <= 1.0:
            raise InputError(f"mix: {self.mix} must be in [0, 1] (0 = no mixup).")
        if self.mix > 0 and self.cutmix_prob > 0:
            raise InputError(
                f"mix {self.mix} and cutmix_prob {self.cutmix_prob}: pick one way of mixing, set the other to 0."
            )
        if not 0.0 <= self.cutmix_prob <= 1.0:
            raise InputError(f"cutmix_prob: {self.cutmix_prob} must be in [0, 1].")
        if self.cutmix_alpha <= 0:
            raise InputError(f"cutmix_alpha: {self.cutmix_alpha} must be > 0.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"ema_decay: {self.ema_decay} must be in [0, 1) (0 = off).")


def seed_everything(seed: int) -> None:
    """Same seed and machine -> same weights, batches and metrics."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on norms and biases (1-D tensors), as timm's param_groups_weight_decay does.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)


@dataclass
class FitResult:
    best_f1: float
    best_epoch: int
    epochs_run: int
    device: str
    teacher_outputs: str  # none | per_batch | views | cached (exact: no random augmentation) | cached_unaugmented


def _mixer(cfg: TrainConfig, num_classes: int) -> Mixup | None:
    """timm's Mixup for batches drawn at random: random-box CutMix (cutmix_prob, per batch), or
    mixup of a share `mix` of the images (per image, Beta(1, 1)); it also applies the label smoothing."""
    if cfg.cutmix_prob > 0:
        return Mixup(
            mixup_alpha=0.0,
            cutmix_alpha=cfg.cutmix_alpha,
            prob=cfg.cutmix_prob,
            switch_prob=0.0,
            label_smoothing=cfg.label_smoothing,
            num_classes=num_classes,
        )
    if cfg.mix > 0:
        return Mixup(
            mixup_alpha=1.0,
            cutmix_alpha=0.0,
            prob=cfg.mix,
            mode="elem",
            label_smoothing=cfg.label_smoothing,
            num_classes=num_classes,
        )
    return None


def validate(model: nn.Module, val: tuple[np.ndarray, np.ndarray], meta: dict[str, Any], cfg: TrainConfig) -> dict:
    """{'val/loss', 'val/f1'} of `model` (on cfg's device) on val, prepared as `meta` records."""
    logits = predict_checkpoint(model, meta, val[0], resolve_device(cfg.device), cfg.eval_batch_size)
    val_y = torch.from_numpy(val[1])
    return {
        "val/loss": nn.functional.cross_entropy(logits, val_y).item(),
        "val/f1": macro_f1(val_y.numpy(), logits.argmax(1).numpy(), len(meta["classes"])),
    }


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    checkpoint: Path,
    meta: dict[str, Any],
    distiller: Distiller | None = None,
    criterion: Criterion | None = None,
    log: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
    resume: Path | None = None,
) -> FitResult:
    """Train `model`; keep the checkpoint with the best validation macro F1.

    Args:
        model: built (and seeded) by the caller.
        train: (uint8 images (N, S, S, 3), int64 labels (N,) or float class probabilities
            (N, K), e.g. soft pseudo labels).
        val: (uint8 images, int64 labels (N,)) for model selection.
        cfg: loop settings.
        checkpoint: where the best checkpoint goes; `<stem>.last.pt` beside it on Ctrl-C.
        meta: plain-typed checkpoint fields (arch, arch_kwargs, classes, input_size, mean, std).
        distiller: the teachers and kd settings (tinycls.distill.create_distiller); None trains
            on cfg.loss alone. The teachers see each training batch exactly as the student does;
            their outputs are computed once and reused every epoch when no augmentation is
            random, for each of kd.views fixed views (teacher_outputs views: the student trains
            on those views), or for the unaugmented image (cached). Label smoothing applies to cfg.loss `ce`,
            and to every loss through the CutMix targets.
        criterion: overrides the loss: criterion(logits, targets, inputs); targets are class
            probabilities (B, K) when CutMix or soft labels are on.
        log: called once per epoch with {'train/loss', 'val/loss', 'val/f1', 'lr'}.
        progress: show a tqdm bar with live loss and F1.
        resume: a file for the full training state (model, optimizer, schedule, AMP scaler, EMA,
            every RNG, best-so-far and the logged rows), written after every epoch. A fit of the
            same model, data and settings finding it there continues after its last epoch, with
            the same result as an uninterrupted fit; one of another fit is ignored. The caller
            removes it when done.

    Raises:
        ValueError: CutMix asked for with soft labels (it needs class indices), or cached
            teacher outputs with CutMix.
        KeyboardInterrupt: re-raised after the current weights are saved.
    """
    device = resolve_device(cfg.device)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device, memory_format=layout)
    if distiller is not None:
        distiller.teachers.to(memory_format=layout)
    random_aug = cfg.hflip or cfg.translate > 0 or cfg.zoom < 1 or cfg.mix > 0 or cfg.cutmix_prob > 0
    # fixed views carry their own mixing (the teachers answered the blended pixels): no mixer then
    fixed = distiller is not None and distiller.kd.teacher_outputs == "views" and random_aug
    mixer = None if fixed and cfg.cutmix_prob == 0 else _mixer(cfg, len(meta["classes"]))
    if mixer is not None and train[1].ndim != 1:
        what = "cutmix_prob" if cfg.cutmix_prob > 0 else "mix"
        raise InputError(f"{what} > 0 needs class-index labels, not soft labels; set it to 0.0.")
    # mixed targets already carry the label smoothing (timm's Mixup applies it).
    base = student_loss(cfg.loss, 0.0 if mixer else cfg.label_smoothing, cfg.focal_gamma, cfg.f1_weight)
    teach = teaching(distiller, base, train[0], meta["input_size"], random_aug, cfg.cutmix_prob > 0, device, cfg)
    ema = ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    evaluated = ema.module if ema else model  # what is validated and saved
    amp = cfg.amp and device.type == "cuda"
    # images stay where they are (an array, or tinycls.rows.Rows on disk): a batch is read per step
    x_all, y_all = train[0], torch.from_numpy(train[1])
    # A last batch of one image breaks BatchNorm in training mode: drop it (it is reshuffled).
    steps = len(x_all) // cfg.batch_size + (len(x_all) % cfg.batch_size >= 2)
    if steps == 0:
        raise InputError(f"{len(x_all)} training image(s): at least 2 are needed.")
    opt = _optimizer(model, cfg)
    loop = _Loop(
        model, cfg, meta, x_all, y_all, steps, mixer, base, teach, distiller, criterion, opt,
        _scheduler(opt, cfg, cfg.epochs * steps), torch.amp.GradScaler("cuda", enabled=amp), ema,
        torch.Generator().manual_seed(cfg.seed), device, amp,
    )  # fmt: skip
    best = FitResult(best_f1=-1.0, best_epoch=0, epochs_run=0, device=device.type, teacher_outputs=teach.outputs)
    key = _fingerprint(model, train, val, cfg, meta, distiller) if resume else ""
    rows: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    if resume is not None and (state := _read_resume(resume, key)) is not None:
        best, best_state, rows = loop.restore(state)
        if best_state is not None:  # the stage's outputs were removed (dvc repro does): write it again
            kept = copy.deepcopy(evaluated)
            kept.load_state_dict(best_state)
            save_checkpoint(checkpoint, kept, {**meta, "epoch": best.best_epoch, "val_f1": best.best_f1})
        for row in rows:
            if log:
                log(row)
        print(f"resuming after epoch {best.epochs_run} of {cfg.epochs} from {resume}")
    try:
        for epoch in range(best.epochs_run + 1, cfg.epochs + 1):
            bar = tqdm(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=True,
                       dynamic_ncols=True, mininterval=0.5)  # fmt: skip
            row = {"train/loss": loop.epoch(epoch, bar, best.best_f1), **validate(evaluated, val, meta, cfg)}
            row["lr"] = opt.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{row['train/loss']:.4f}", val_f1=f"{row['val/f1']:.4f}")
            bar.close()
            best.epochs_run = epoch
            if row["val/f1"] > best.best_f1:
                best.best_f1, best.best_epoch = row["val/f1"], epoch
                save_checkpoint(checkpoint, evaluated, {**meta, "epoch": epoch, "val_f1": row["val/f1"]})
                if resume is not None:
                    best_state = {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}
            if log:
                log(row)
            rows.append(row)
            if resume is not None:
                loop.save_state(resume, key, best, best_state, rows)
    except KeyboardInterrupt:
        _save_interrupted(checkpoint, model, meta, best.epochs_run)
        raise
    checkpoint.with_name(checkpoint.stem + ".last.pt").unlink(missing_ok=True)  # an interrupted run's, superseded
    return best


@dataclass
class _Loop:
    """The state of one fit that every training step uses."""

    model: nn.Module
    cfg: TrainConfig
    meta: dict[str, Any]
    x_all: np.ndarray | Rows
    y_all: torch.Tensor
    steps: int
    mixer: Mixup | None
    base: nn.Module
    teach: Teaching
    distiller: Distiller | None
    criterion: Criterion | None
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEmaV3 | None
    gen: torch.Generator
    device: torch.device
    amp: bool

    def epoch(self, epoch: int, bar: tqdm, best_f1: float) -> float:
        """Train one epoch over a fresh shuffle; the mean training loss."""
        cfg, size, view = self.cfg, self.meta["input_size"], self.teach.view
        mean, std = tuple(self.meta["mean"]), tuple(self.meta["std"])
        self.model.train()
        order = torch.randperm(len(self.x_all), generator=self.gen)
        loss_sum, seen = torch.zeros((), device=self.device), 0
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            xb = torch.from_numpy(self.x_all[idx.numpy()])
            xv = to_input(xb.to(self.device, non_blocking=True), view, mean, std)
            rows: Any = idx  # where this batch's teacher outputs sit in a precomputed cache
            y = self.y_all[idx].to(self.device, non_blocking=True)
            if self.teach.views is not None:  # each image in one of its fixed views, the one its teacher answered
                pick = torch.randint(self.teach.views.flip.shape[1], (len(idx),), generator=self.gen)
                v, rows = self.teach.views[idx, pick], (idx, pick)
                if v.partner is not None:
                    y = mix_targets(y, self.y_all[v.partner].to(self.device), v.own, len(self.meta["classes"]))
                xv = apply_views(xv, v, partner_pixels(self.x_all, v, self.device, view, mean, std))
            else:
                xv = augment(xv, cfg.hflip, cfg.translate, self.gen, cfg.zoom)
            if self.mixer:  # never with a precomputed cache (tinycls.distill.teaching refuses it)
                if len(xv) % 2:  # timm mixes a batch with its reverse: drop the odd one out
                    xv, y = xv[:-1], y[:-1]
                xv, y = self.mixer(xv, y)  # y: (B, K) mixed, smoothed class probabilities
            x = xv if view == size else F.interpolate(xv, (size, size), mode="bilinear", antialias=True)
            with torch.autocast(self.device.type, enabled=self.amp):
                loss = self._loss(self.model(x), x, xv, y, rows)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            if self.ema:
                self.ema.update(self.model, step=(epoch - 1) * self.steps + step)
            loss_sum += loss.detach() * len(x)
            seen += len(x)
            if step % 20 == 0 or step == self.steps - 1:  # .item() syncs CUDA: not every step
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", best_f1=f"{max(best_f1, 0):.4f}")
        return loss_sum.item() / seen

    def save_state(
        self,
        path: Path,
        key: str,
        best: FitResult,
        best_state: dict[str, torch.Tensor] | None,
        rows: list[dict[str, float]],
    ) -> None:
        """Everything the next epoch depends on, atomically, in plain types (weights_only loads it)."""
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "fingerprint": key,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "numpy_rng": [kind, keys.tolist(), pos, has_gauss, cached],  # timm's CutMix draws from it
            "python_rng": random.getstate(),
            "best": asdict(best),
            "best_state": best_state,
            "rows": rows,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def restore(self, state: dict[str, Any]) -> tuple[FitResult, dict[str, torch.Tensor] | None, list[dict]]:
        """Put a saved state back; returns (best so far, its weights, the rows logged so far)."""
        self.model.load_state_dict(state["model"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.scaler.load_state_dict(state["scaler"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        kind, keys, pos, has_gauss, cached = state["numpy_rng"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
        return FitResult(**state["best"]), state["best_state"], state["rows"]

    def _loss(
        self,
        logits: torch.Tensor,
        x: torch.Tensor,
        xv: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """The criterion override, the distillation loss (teachers on the prepared batch `xv`, or
        their precomputed outputs at `rows`: images, or (images, views) with fixed views), or
        the student's own loss."""
        if self.criterion:
            return self.criterion(logits, y, x)
        if self.teach.loss:
            cache = self.teach.cache
            t = cache[rows].to(self.device) if cache is not None else self.distiller.teachers(xv)
            return self.teach.loss(logits, t, y)
        return self.base(logits, y)


def _fingerprint(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    meta: dict[str, Any],
    distiller: Distiller | None,
) -> str:
    """What makes a fit this fit (settings, data, initial weights, teachers): a resume state
    saved under any other fingerprint is stale."""
    h = hashlib.sha256(json.dumps([asdict(cfg), meta], sort_keys=True, default=str).encode())
    for a in (*train, *val):
        h.update(f"{a.shape}{a.dtype}".encode())
        for i in range(0, len(a), 4096):  # a cache on disk is read a chunk at a time
            h.update(np.ascontiguousarray(a[i : i + 4096]).data)
    tensors = list(model.state_dict().values())
    if distiller is not None:
        h.update(repr(distiller.kd).encode())
        tensors += list(distiller.teachers.state_dict().values())
    for v in tensors:
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _read_resume(path: Path, key: str) -> dict[str, Any] | None:
    """The resume state at `path` when it belongs to this fit, else None (and why, printed)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a half-written or foreign file: start over rather than fail
        print(f"{path}: not a readable resume state ({type(e).__name__}); starting from epoch 1")
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != key:
        print(f"{path}: saved by a fit of other settings, data or weights; starting from epoch 1")
        return None
    return state


def _save_interrupted(checkpoint: Path, model: nn.Module, meta: dict[str, Any], epochs_run: int) -> None:
    last = checkpoint.with_name(checkpoint.stem + ".last.pt")
    save_checkpoint(last, model, {**meta, "epoch": epochs_run, "val_f1": None})
    if not checkpoint.exists():
        save_checkpoint(checkpoint, model, {**meta, "epoch": epochs_run, "val_f1": None})
    print(f"\ninterrupted: current weights in {last}, best so far in {checkpoint}")
