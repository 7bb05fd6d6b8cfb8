"""Frozen teachers for knowledge distillation: one checkpoint or a weighted ensemble, fed the
student's own (augmented, possibly CutMix-mixed) batch, re-normalized and resized for each
teacher's input size.
"""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinycls.checkpoint import load_checkpoint
from tinycls.predict import predict_logits


def _stats(values: Sequence[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32, device=device).view(1, -1, 1, 1)


class Teachers(nn.Module):
    """A frozen ensemble: T * log(sum_i w_i softmax(z_i / T)), the logits whose softmax at
    temperature T is the weighted mean of the teachers' softened probabilities.

    For one teacher this is its own logits shifted per row, so softmax(. / T) and argmax are
    unchanged. Teachers are in eval mode, take no gradient, and are never updated.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        metas: Sequence[dict[str, Any]],
        weights: Sequence[float],
        temperature: float,
        student_mean: Sequence[float],
        student_std: Sequence[float],
    ) -> None:
        super().__init__()
        if not models or len(models) != len(metas) or len(weights) != len(models):
            raise ValueError(f"{len(models)} teacher(s), {len(metas)} meta(s) and {len(weights)} weight(s) must match.")
        if any(w <= 0 for w in weights):
            raise ValueError(f"teacher weights {list(weights)} must all be > 0.")
        if temperature <= 0:
            raise ValueError(f"temperature: {temperature} must be > 0.")
        self.models = nn.ModuleList(models).eval().requires_grad_(False)
        self.metas = list(metas)
        total = float(sum(weights))
        self.weights = [w / total for w in weights]
        self.temperature = temperature
        self.student_mean, self.student_std = tuple(student_mean), tuple(student_std)
        self.eval()

    def train(self, mode: bool = True) -> "Teachers":
        return super().train(False)  # always eval: BatchNorm statistics and dropout stay frozen

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: the student's normalized batch (B, 3, H, W) -> ensemble logits (B, K), float32."""
        pixels = x.float() * _stats(self.student_std, x.device) + _stats(self.student_mean, x.device)
        parts = []  # log(w_i) + log softmax(z_i / T), summed over i in log space (no underflow)
        for model, meta, w in zip(self.models, self.metas, self.weights, strict=True):
            size = meta["input_size"]
            y = pixels
            if y.shape[-1] != size:
                y = F.interpolate(y, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            y = (y - _stats(meta["mean"], x.device)) / _stats(meta["std"], x.device)
            parts.append(math.log(w) + F.log_softmax(model(y).float() / self.temperature, dim=1))
        return self.temperature * torch.logsumexp(torch.stack(parts), dim=0)

    @property
    def input_size(self) -> int:
        """The largest teacher input: the resolution the student's batch is prepared at."""
        return max(int(m["input_size"]) for m in self.metas)

    def logits_for(
        self, images: np.ndarray, size: int, device: torch.device, batch_size: int = 512, amp: bool = True
    ) -> torch.Tensor:
        """Ensemble logits (N, K) on CPU for uint8 images (N, S, S, 3) prepared as the training
        batch is without augmentation (at `size`, the student's normalization): the cache used
        when no augmentation is random. `amp`: mixed precision on CUDA."""
        return predict_logits(self, images, size, self.student_mean, self.student_std, device, batch_size, amp)


def load_teachers(
    paths: Sequence[Path],
    classes: Sequence[str],
    weights: Sequence[float],
    temperature: float,
    student_mean: Sequence[float],
    student_std: Sequence[float],
    device: str | torch.device = "cpu",
) -> Teachers:
    """Teachers from checkpoints, each checked against the data's classes.

    Raises:
        FileNotFoundError / ValueError: a checkpoint is missing or unreadable (from
            load_checkpoint), or its classes differ from the data's (the message names it).
    """
    models, metas = [], []
    for path in paths:
        model, meta = load_checkpoint(path, device, classes, role="teacher")
        models.append(model)
        metas.append(meta)
    return Teachers(models, metas, weights, temperature, student_mean, student_std).to(device)
