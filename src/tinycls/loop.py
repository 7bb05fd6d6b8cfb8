"""A fit's training state and one epoch of it. The state (Loop) is built once from the fit's
inputs: the mixer, the loss, the teaching plan, EMA, optimizer, schedule, AMP scaler and the
shuffling generator. An epoch: shuffle, read each batch, augment or pick its fixed view, mix,
resize for the student, the loss (criterion override, distillation, or the student's own), then
the optimizer, schedule, scaler and EMA steps. `tinycls.train.fit` runs it epoch by epoch.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch import nn
from tqdm import tqdm

from tinycls import distributed
from tinycls.distill import Distiller
from tinycls.errors import InputError
from tinycls.losses import student_loss
from tinycls.rows import Rows
from tinycls.teaching import Teaching, teaching
from tinycls.train_config import TrainConfig
from tinycls.transforms import apply_views, augment, mix_targets, partner_pixels, to_input

# criterion(logits (B, K), targets (B,) or (B, K), inputs (B, 3, H, W)) -> scalar loss: an
# override of the configured loss (tests use it to watch the batches).
Criterion = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FitResult:
    best_f1: float
    best_epoch: int
    epochs_run: int
    device: str
    teacher_outputs: str  # none | per_batch | views | cached (exact: no random augmentation) | cached_unaugmented


class Loop:
    """The state of one fit that every training step uses, built from its inputs in one place: the
    mixer, the loss, the teaching plan (teachers run here when their outputs are computed up front),
    EMA, optimizer, schedule, AMP scaler and the shuffling generator.

    Raises:
        InputError: mixing asked for with soft labels, a teaching mode the augmentation rules out
            (tinycls.teaching.teaching), or fewer than 2 training images.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        meta: dict[str, Any],
        train: tuple[np.ndarray | Rows, np.ndarray],
        distiller: Distiller | None,
        criterion: Criterion | None,
        device: torch.device,
    ) -> None:
        self.model, self.cfg, self.meta = model, cfg, meta
        self.distiller, self.criterion, self.device = distiller, criterion, device
        random_aug = cfg.hflip or cfg.translate > 0 or cfg.zoom < 1 or cfg.mix > 0 or cfg.cutmix_prob > 0
        # fixed views carry their own mixing (the teachers answered the blended pixels): no mixer then
        fixed = distiller is not None and distiller.kd.teacher_outputs == "views" and random_aug
        self.mixer = None if fixed and cfg.cutmix_prob == 0 else _mixer(cfg, len(meta["classes"]))
        if self.mixer is not None and train[1].ndim != 1:
            what = "cutmix_prob" if cfg.cutmix_prob > 0 else "mix"
            raise InputError(f"{what} > 0 needs class-index labels, not soft labels; set it to 0.0.")
        # mixed targets already carry the label smoothing (timm's Mixup applies it).
        self.base = student_loss(cfg.loss, 0.0 if self.mixer else cfg.label_smoothing, cfg.focal_gamma, cfg.f1_weight)
        size, cutmix = meta["input_size"], cfg.cutmix_prob > 0
        self.teach: Teaching = teaching(distiller, self.base, train[0], size, random_aug, cutmix, device, cfg)
        self.world = distributed.world()  # torchrun's processes sharing each batch (1: a plain run)
        self.net = distributed.wrap(model, device, cfg.sync_bn)  # the model itself in one process
        self.ema = ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.amp = cfg.amp and device.type == "cuda"
        # images stay where they are (an array, or tinycls.rows.Rows on disk): a batch is read per step
        self.x_all, self.y_all = train[0], torch.from_numpy(train[1])
        # A last batch of one image (per process) breaks BatchNorm in training mode: drop it (it is reshuffled).
        self.steps = len(self.x_all) // cfg.batch_size + (len(self.x_all) % cfg.batch_size >= 2 * self.world)
        if self.steps == 0:
            raise InputError(f"{len(self.x_all)} training image(s): at least 2 are needed.")
        self.opt = _optimizer(model, cfg)
        self.sched = _scheduler(self.opt, cfg, cfg.epochs * self.steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.gen = torch.Generator().manual_seed(cfg.seed)

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
            if self.mixer:  # never with a precomputed cache (tinycls.teaching.teaching refuses it)
                if len(xv) % 2:  # timm mixes a batch with its reverse: drop the odd one out
                    xv, y = xv[:-1], y[:-1]
                xv, y = self.mixer(xv, y)  # y: (B, K) mixed, smoothed class probabilities
            x = xv if view == size else F.interpolate(xv, (size, size), mode="bilinear", antialias=True)
            n = len(x)
            if self.world > 1:  # every rank drew the whole batch; each trains on its share
                part = distributed.share(n)
                x, xv, y = x[part], xv[part], y[part]
                rows = tuple(r[part] for r in rows) if isinstance(rows, tuple) else rows[part]
            with torch.autocast(self.device.type, enabled=self.amp):
                loss = self._loss(self.net(x), x, xv, y, rows)
            # DDP averages the ranks' gradients: weigh each share's mean by its size, for the batch's mean
            scaled = loss * (len(x) * self.world / n) if self.world > 1 else loss
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(scaled).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            if self.ema:
                self.ema.update(self.model, step=(epoch - 1) * self.steps + step)
            loss_sum += loss.detach() * len(x)
            seen += len(x)
            if step % 20 == 0 or step == self.steps - 1:  # .item() syncs CUDA: not every step
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", best_f1=f"{max(best_f1, 0):.4f}")
        loss_total, seen_total = distributed.total(loss_sum.item(), seen)
        return loss_total / seen_total

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
