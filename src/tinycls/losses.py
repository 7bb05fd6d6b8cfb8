"""Student losses: knowledge distillation (vanilla and the competition team's true-label KD),
focal loss, soft-F1 loss, and their F1-focal mix. Not wired into a stage yet (see the kd issue).
"""

import torch
import torch.nn.functional as F
from torch import nn

from tinycls.config import one_of

KD_MODES = ("none", "vanilla", "true_label")


def _hard(target: torch.Tensor) -> torch.Tensor:
    """Class indices (B,) from indices or class probabilities (B, K), e.g. CutMix targets."""
    return target.argmax(1) if target.ndim == 2 else target


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
        one_of("mode", mode, KD_MODES)
        if temperature <= 0:
            raise ValueError(f"temperature: {temperature} must be > 0.")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha: {alpha} must be in [0, 1].")
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


class FocalLoss(nn.Module):
    """mean_b[-(1 - p_b)^gamma * log p_b], p_b the probability of the true class (Lin et al. 2017)."""

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1).gather(1, _hard(target)[:, None]).squeeze(1)  # (B,)
        return (-((1 - log_p.exp()) ** self.gamma) * log_p).mean()


class SoftF1Loss(nn.Module):
    """1 - macro soft F1: per class, tp = sum p*y, fp = sum p*(1-y), fn = sum (1-p)*y over the
    batch, F1 = 2tp / (2tp + fp + fn + eps), averaged over classes."""

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = logits.softmax(1)  # (B, K)
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
