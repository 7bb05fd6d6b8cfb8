"""One training epoch: shuffle, read each batch, augment or pick its fixed view, mix, resize for
the student, the loss (criterion override, distillation, or the student's own), the optimizer,
schedule, AMP scaler and EMA steps. `tinycls.train.fit` builds a Loop and runs it epoch by epoch.
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

from tinycls.distill import Distiller
from tinycls.rows import Rows
from tinycls.teaching import Teaching
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


@dataclass(kw_only=True)
class Loop:
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
            if self.mixer:  # never with a precomputed cache (tinycls.teaching.teaching refuses it)
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
