"""Batch-level tensor transforms on the decoded cache: resize, normalize, augment.

Working on whole uint8 batches (on the training device) instead of per-image PIL transforms is
what keeps the loop near the speed of a bare PyTorch loop.
"""

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_input(x: torch.Tensor, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> normalized float (B, 3, size, size)."""
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def draw_views(n: int, hflip: bool, translate: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random augmentation parameters for n images: (flip (n,) bool, shift (n, 2) in grid units).

    Grid units are resolution-free (the side spans [-1, 1]), so one draw describes the same view
    at the student's and at the teacher's input size. Drawn from a CPU generator: the same seed
    gives the same views on any device.
    """
    flip = torch.rand(n, generator=generator) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    if translate > 0:
        shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * translate)
    else:
        shift = torch.zeros(n, 2)
    return flip, shift


def apply_views(x: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Mirror the images where `flip` (B,) and shift them by `shift` (B, 2) grid units, with zero
    fill. x: (B, 3, H, W) float."""
    b = x.shape[0]
    if flip.any():
        x = torch.where(flip.to(x.device).view(b, 1, 1, 1), x.flip(-1), x)
    if shift.any():
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x


def augment(x: torch.Tensor, hflip: bool, translate: float, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation (fraction of the side), per image.

    Random numbers come from a CPU generator, so the same seed gives the same batches on any
    device. x: (B, 3, H, W) float.
    """
    return apply_views(x, *draw_views(x.shape[0], hflip, translate, generator))
