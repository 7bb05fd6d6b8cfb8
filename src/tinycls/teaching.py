"""How the teachers take part in one fit (`teaching`): on each training batch as the student sees
it (per_batch), on K fixed augmented views of each image computed once (views), or once per
unaugmented image (cached); with the size batches are prepared at for the largest model.
"""

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tinycls.distill import DistillationLoss, Distiller
from tinycls.errors import InputError
from tinycls.transforms import Views, draw_views


@dataclass
class Teaching:
    """How the teachers take part in one fit: the loss, the size batches are prepared at, their
    outputs when computed once up front (`cache`: (N, K) logits per training image, or (N, V, K)
    with V fixed views), and the views themselves (tinycls.transforms.Views of shape (N, V))."""

    loss: DistillationLoss | None
    view: int
    cache: torch.Tensor | None
    outputs: str  # none | per_batch | views | cached (exact: no random augmentation) | cached_unaugmented
    views: Views | None = None


def fixed_views(n: int, k: int, hflip: bool, translate: float, seed: int, zoom: float = 1.0, mix: float = 0.0) -> Views:
    """K augmented views of each of n images, fixed by `seed`: Views of shape (n, k), drawn as
    tinycls.transforms.draw_views (zoom, and mix partners among the n images).

    The generator is the fit's seed mixed with k, so a fit's shuffling stream is not reused.
    """
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
    draws = [draw_views(n, hflip, translate, gen, zoom, mix, n) for _ in range(k)]
    stack = lambda name: None if getattr(draws[0], name) is None else torch.stack([getattr(d, name) for d in draws], 1)  # noqa: E731
    return Views(stack("flip"), stack("shift"), stack("scale"), stack("partner"), stack("own"))


def teaching(
    distiller: Distiller | None,
    base: nn.Module,
    images: np.ndarray,
    size: int,
    random_aug: bool,
    cutmix: bool,
    device: torch.device,
    loop: Any,
) -> Teaching:
    """Plan a fit's distillation: `base` is the student's own loss, `images` the training set,
    `size` the student's input, `loop` its TrainConfig (hflip, translate, seed, eval_batch_size, amp).

    Raises:
        InputError: cached or view outputs asked for with CutMix.
    """
    if distiller is None:
        return Teaching(None, size, None, "none")
    # Batches are prepared (resized, augmented, CutMix-mixed) at the largest input any model
    # takes, then resized down for the student: a teacher trained at 224 px sees the same crop
    # at 224 px, not the student's 80 px upsampled.
    view = max(size, distiller.teachers.input_size)
    mode = distiller.kd.teacher_outputs
    if mode in ("cached", "views") and cutmix:
        raise InputError(
            f"teacher_outputs {mode!r} with cutmix_prob > 0: a CutMix batch mixes two images, which "
            "no precomputed output describes; set cutmix_prob: 0.0 or teacher_outputs: per_batch."
        )
    if mode == "cached" and loop.mix > 0:
        raise InputError(
            f"teacher_outputs 'cached' with mix {loop.mix}: a blended image has no precomputed output; "
            "set teacher_outputs: views (its views blend, and the teachers answer the blend) or mix: 0.0."
        )
    if random_aug and mode == "per_batch":
        return Teaching(distiller.loss(base), view, None, "per_batch")
    teachers, batch, amp = distiller.teachers, loop.eval_batch_size, loop.amp
    if random_aug and mode == "views":
        k = distiller.kd.views
        views = fixed_views(len(images), k, loop.hflip, loop.translate, loop.seed, loop.zoom, loop.mix)
        cache = torch.stack([teachers.logits_for(images, view, device, batch, amp, views[:, i]) for i in range(k)], 1)
        return Teaching(distiller.loss(base), size, cache, "views", views)  # cache (N, V, K)
    if random_aug:
        warnings.warn(
            "kd.teacher_outputs 'cached': every augmented view is taught the teacher's answer for the "
            "unaugmented image, another picture than the student sees; 'views' is consistent at about "
            "the same cost.",
            stacklevel=2,
        )
    cache = teachers.logits_for(images, view, device, batch, amp)
    # the teachers saw each image at their size once; the student's batch is its own
    return Teaching(distiller.loss(base), size, cache, "cached_unaugmented" if random_aug else "cached")
