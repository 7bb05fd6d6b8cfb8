"""Knowledge distillation: its settings (KDConfig, the one owner of mode, temperature, alpha,
teachers and weights), the loss, and frozen teachers (one checkpoint or a weighted ensemble)
fed the student's own (augmented, possibly CutMix-mixed) batch, re-normalized and resized for
each teacher's input size. `create_distiller` decides, in one place, whether a fit distils.
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinycls.checkpoint import load_checkpoint
from tinycls.config import one_of
from tinycls.errors import InputError
from tinycls.predict import predict_logits
from tinycls.transforms import Views

KD_MODES = ("none", "vanilla", "true_label")
# The checkpoints a teachers list may name: the pipeline's teacher, its assistant (the middle of
# a chain), and the uncompressed student (which teaches only its own compressed copy).
TEACHER_ROLES = ("teacher", "assistant", "student")
# views: K augmented views per training image, fixed by the seed; the teachers answer each once
# (K teacher passes per fit) and the student trains on exactly those views, each taught by the
# answer for its own pixels (consistent, "function matching": Beyer et al., CVPR 2022).
# per_batch: the teachers see every augmented batch (exact, any augmentation; a teacher forward per step).
# cached: their logits on each unaugmented training image, computed once and reused for every
# augmented view of it (one teacher pass per fit; inconsistent: a view is taught the answer for
# another picture, so it is opt-in and warns).
OUTPUT_MODES = ("views", "per_batch", "cached")


@dataclass(frozen=True)
class KDConfig:
    """Distillation settings (params.yaml [kd], [assistant].kd), validated here and nowhere else.

    mode: none | vanilla | true_label; temperature T; alpha, the weight of the student's own loss
    (1 - alpha goes to the KL term); teachers, names in TEACHER_ROLES; weights, one per teacher
    (empty = equal); teacher_outputs, one of OUTPUT_MODES.
    """

    mode: str
    temperature: float = 4.0
    alpha: float = 0.5
    teachers: list[str] = field(default_factory=lambda: ["teacher"])
    weights: list[float] = field(default_factory=list)
    teacher_outputs: str = "per_batch"
    views: int = 8

    def __post_init__(self) -> None:
        one_of("mode", self.mode, KD_MODES)
        if self.temperature <= 0:
            raise InputError(f"temperature: {self.temperature} must be > 0.")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha: {self.alpha} must be in [0, 1].")
        one_of("teacher_outputs", self.teacher_outputs, OUTPUT_MODES)
        if isinstance(self.views, bool) or not isinstance(self.views, int) or not 1 <= self.views <= 256:
            raise InputError(f"views: {self.views!r} must be a whole number in [1, 256] (augmented views per image).")
        if not isinstance(self.teachers, list) or not self.teachers:
            raise InputError(f"teachers: {self.teachers!r} must be a non-empty list, e.g. [teacher].")
        for name in self.teachers:
            if name not in TEACHER_ROLES:
                raise InputError(f"teachers: {name!r} is not one of {', '.join(TEACHER_ROLES)}.")
        if len(set(self.teachers)) != len(self.teachers):
            raise InputError(f"teachers: {self.teachers} lists a teacher twice; use weights instead.")
        if not isinstance(self.weights, list) or (self.weights and len(self.weights) != len(self.teachers)):
            raise InputError(
                f"weights: {self.weights!r} must be empty (equal) or give one weight per teacher {self.teachers}."
            )
        if any(not isinstance(w, (int, float)) or isinstance(w, bool) or w <= 0 for w in self.weights):
            raise InputError(f"weights: {self.weights} must all be numbers > 0.")

    @property
    def on(self) -> bool:
        """Whether a fit distils: a mode other than none and some weight on the KL term."""
        return self.mode != "none" and self.alpha < 1.0

    def taught_by(self, names: list[str]) -> "KDConfig":
        """These settings with `names` as the teachers, equally weighted.

        Raises:
            ValueError: a bad name or list (the message names the key `teachers`).
        """
        return dataclasses.replace(self, teachers=names, weights=[])


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

    def __init__(self, kd: KDConfig, base: nn.Module) -> None:
        super().__init__()
        self.mode, self.temperature, self.alpha, self.base = kd.mode, kd.temperature, kd.alpha, base

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """student_logits, teacher_logits: (B, K); target: (B,) indices or (B, K) probabilities."""
        base = self.base(student_logits, target)
        if self.mode == "none" or self.alpha == 1.0:
            return base
        kl = kd_kl(student_logits, teacher_logits, self.temperature)  # (B,)
        if self.mode == "true_label":
            kl = kl * (teacher_logits.argmax(1) == _hard(target)).float()
        return self.alpha * base + (1.0 - self.alpha) * kl.mean()


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
        self,
        images: np.ndarray,
        size: int,
        device: torch.device,
        batch_size: int = 512,
        amp: bool = True,
        views: Views | None = None,
    ) -> torch.Tensor:
        """Ensemble logits (N, K) on CPU for uint8 images (N, S, S, 3) prepared as the training
        batch is (at `size`, the student's normalization), each in its view when `views` gives
        one per image (tinycls.transforms.apply_views; partners are indices into `images`).
        `amp`: mixed precision on CUDA."""
        return predict_logits(
            self, images, size, self.student_mean, self.student_std, device, batch_size, amp, views=views
        )


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


class Distiller:
    """What a fit distils with: the settings and the frozen teachers built at their temperature."""

    def __init__(self, kd: KDConfig, teachers: Teachers) -> None:
        if teachers.temperature != kd.temperature:
            raise ValueError(f"teachers built at T={teachers.temperature}, kd asks T={kd.temperature}.")
        self.kd, self.teachers = kd, teachers

    def loss(self, base: nn.Module) -> DistillationLoss:
        """The training loss: `base` (the student's own loss) mixed with the KL term."""
        return DistillationLoss(self.kd, base)


def create_distiller(
    kd: KDConfig | None,
    checkpoints: Mapping[str, Path],
    classes: Sequence[str],
    student_mean: Sequence[float],
    student_std: Sequence[float],
    device: str | torch.device = "cpu",
) -> Distiller | None:
    """The distiller `kd` asks for, or None when it distils nothing (no kd, mode none, alpha 1).

    Args:
        checkpoints: where each name in kd.teachers is (e.g. {"teacher": Path(...)}).

    Raises:
        ValueError: a teacher without a checkpoint in `checkpoints`, or one whose classes differ
            from the data's; FileNotFoundError: a checkpoint file is missing.
    """
    if kd is None or not kd.on:
        return None
    if missing := [n for n in kd.teachers if n not in checkpoints]:
        raise InputError(f"teachers: {missing} have no checkpoint here (known: {', '.join(checkpoints)}).")
    weights = kd.weights or [1.0] * len(kd.teachers)
    paths = [checkpoints[n] for n in kd.teachers]
    teachers = load_teachers(paths, classes, weights, kd.temperature, student_mean, student_std, device)
    return Distiller(kd, teachers)
