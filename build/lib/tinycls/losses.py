"""Student losses: cross-entropy, focal loss, soft-F1 loss and their F1-focal mix (the
distillation loss is tinycls.distill's). Every loss takes class indices
(B,) or class probabilities (B, K) (CutMix-mixed or soft pseudo labels) as targets.
"""

import torch
import torch.nn.functional as F
from torch import nn

from tinycls.config import one_of
from tinycls.errors import InputError

LOSSES = ("ce", "focal", "f1_focal")


class CrossEntropy(nn.CrossEntropyLoss):
    """mean_b[-sum_k t_bk log p_bk], t the (label-smoothed) one-hot or given class probabilities:
    torch's own loss, with label smoothing (Szegedy et al. 2016: t' = (1 - e) t + e / K) as its
    one argument."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing=label_smoothing)


class FocalLoss(nn.Module):
    """mean_b[-sum_k t_bk (1 - p_bk)^gamma log p_bk] (Lin et al. 2017, "Focal Loss for Dense Object
    Detection"); with one-hot t it is -(1 - p_y)^gamma log p_y, and gamma = 0 gives cross-entropy."""

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise InputError(f"gamma: {gamma} must be >= 0.")
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)  # (B, K)
        t = target.float() if target.ndim == 2 else F.one_hot(target, log_p.shape[1]).float()
        return (-(t * (1 - log_p.exp()) ** self.gamma * log_p).sum(1)).mean()


class SoftF1Loss(nn.Module):
    """1 - macro soft F1: per class, tp = sum p*y, fp = sum p*(1-y), fn = sum (1-p)*y over the
    batch, F1 = 2tp / (2tp + fp + fn + eps), averaged over classes."""

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = logits.float().softmax(1)  # (B, K)
        y = target.float() if target.ndim == 2 else F.one_hot(target, p.shape[1]).float()
        tp, fp, fn = (p * y).sum(0), (p * (1 - y)).sum(0), ((1 - p) * y).sum(0)
        return 1 - (2 * tp / (2 * tp + fp + fn + self.eps)).mean()


class F1FocalLoss(nn.Module):
    """weight * SoftF1Loss + (1 - weight) * FocalLoss(gamma): the team's 0.6 / 0.4, gamma 2."""

    def __init__(self, weight: float = 0.6, gamma: float = 2.0) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise InputError(f"weight: {weight} must be in [0, 1].")
        self.weight, self.f1, self.focal = weight, SoftF1Loss(), FocalLoss(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * self.f1(logits, target) + (1 - self.weight) * self.focal(logits, target)


def student_loss(
    name: str, label_smoothing: float = 0.0, focal_gamma: float = 2.0, f1_weight: float = 0.6
) -> nn.Module:
    """The base loss by name: `ce` (with label smoothing), `focal`, or `f1_focal` (the team's
    f1_weight * soft-F1 + (1 - f1_weight) * focal). Label smoothing here applies to `ce`; targets
    that arrive smoothed (timm's CutMix) are smoothed for every loss.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or a bad weight/gamma.
    """
    one_of("loss", name, LOSSES)
    if name == "ce":
        return CrossEntropy(label_smoothing)
    if name == "focal":
        return FocalLoss(focal_gamma)
    return F1FocalLoss(f1_weight, focal_gamma)
