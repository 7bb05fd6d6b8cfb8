"""Student losses: knowledge distillation (vanilla and the competition team's true-label KD),
cross-entropy, focal loss, soft-F1 loss and their F1-focal mix. Every loss takes class indices
(B,) or class probabilities (B, K) (CutMix-mixed or soft pseudo labels) as targets.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tinycls.config import one_of

KD_MODES = ("none", "vanilla", "true_label")
LOSSES = ("ce", "focal", "f1_focal")


def _hard(target: torch.Tensor) -> torch.Tensor:
    """Class indices (B,) from indices or class probabilities (B, K), e.g. CutMix targets."""
    return target.argmax(1) if target.ndim == 2 else target


def check_kd(mode: str, temperature: float, alpha: float) -> None:
    """Raise ValueError for an unknown mode, temperature <= 0 or alpha outside [0, 1]."""
    one_of("mode", mode, KD_MODES)
    if temperature <= 0:
        raise ValueError(f"temperature: {temperature} must be > 0.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: {alpha} must be in [0, 1].")


@dataclass(frozen=True)
class KDConfig:
    """Distillation settings: mode (none | vanilla | true_label), temperature T, and alpha, the
    weight of the student's own loss (1 - alpha goes to the KL term)."""

    mode: str = "none"
    temperature: float = 4.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        check_kd(self.mode, self.temperature, self.alpha)


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample T^2 * KL(softmax(t / T) || softmax(s / T)), shape (B,); the teacher is detached."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    return temperature**2 * (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)


class DistillationLoss(nn.Module):
    """alpha * base(student, target) + (1 - alpha) * mean_b[w_b * T^2 * KL(p_t^T || p_s^T)].

    Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network" (2015). `vanilla`:
    w_b = 1 (KL averaged over the batch, i.e. batchmean). `true_label`: w_b = [argmax teacher_b ==
    label_b], distilling only where the teacher is right (the competition team's variant, with
    T = 20, alpha = 0.3). `none`: the base loss alone.
    """

    def __init__(self, mode: str, temperature: float, alpha: float, base: nn.Module) -> None:
        super().__init__()
        check_kd(mode, temperature, alpha)
        self.mode, self.temperature, self.alpha, self.base = mode, temperature, alpha, base

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """student_logits, teacher_logits: (B, K); target: (B,) indices or (B, K) probabilities."""
        base = self.base(student_logits, target)
        if self.mode == "none" or self.alpha == 1.0:
            return base
        kl = kd_kl(student_logits, teacher_logits, self.temperature)  # (B,)
        if self.mode == "true_label":
            kl = kl * (teacher_logits.argmax(1) == _hard(target)).float()
        return self.alpha * base + (1.0 - self.alpha) * kl.mean()


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
            raise ValueError(f"gamma: {gamma} must be >= 0.")
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
            raise ValueError(f"weight: {weight} must be in [0, 1].")
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
