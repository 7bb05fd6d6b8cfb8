"""Batch-level tensor transforms on the decoded cache: resize, normalize, augment.

Working on whole uint8 batches (on the training device) instead of per-image PIL transforms is
what keeps the loop near the speed of a bare PyTorch loop.
"""

from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Views:
    """Augmentation parameters, one row per image (any leading shape): `flip` bool, `shift` (.., 2)
    and `scale` in grid units (the side spans [-1, 1], so one draw describes the same view at any
    resolution; scale s < 1 shows a crop of s of the side, zoomed in), and, when mixing,
    `partner`, the index of the training image blended in, and `own`, the weight of the image's own
    pixels (1 - own goes to the partner; labels are blended alike)."""

    flip: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor
    partner: torch.Tensor | None = None
    own: torch.Tensor | None = None

    def __getitem__(self, key: Any) -> "Views":
        """The views at `key` (an index, slice or tuple of index tensors into the leading dims)."""
        part = lambda t: None if t is None else t[key]  # noqa: E731
        return Views(self.flip[key], self.shift[key], self.scale[key], part(self.partner), part(self.own))


def draw_views(
    n: int,
    hflip: bool,
    translate: float,
    generator: torch.Generator,
    zoom: float = 1.0,
    mix: float = 0.0,
    pool: int = 0,
) -> Views:
    """Random augmentation parameters for n images (Views).

    hflip: mirror half of them; translate: shift by up to that fraction of the side; zoom < 1:
    crop a share of the side drawn from [zoom, 1], anywhere in the image; mix > 0: blend that share
    of them with an image drawn from `pool` training images, own weight drawn from [0, 1] (mixup
    with Beta(1, 1)). Drawn from a CPU generator: the same seed gives the same views on any
    device; with zoom 1 and mix 0 nothing more is drawn than flips and shifts.
    """
    flip = torch.rand(n, generator=generator) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    u = torch.rand(n, 2, generator=generator) * 2 - 1 if translate > 0 or zoom < 1 else torch.zeros(n, 2)
    scale = zoom + (1 - zoom) * torch.rand(n, generator=generator) if zoom < 1 else torch.ones(n)
    shift = u * (2 * translate + (1 - scale)).unsqueeze(1)  # the crop anywhere inside, then the shift
    if mix <= 0:
        return Views(flip, shift, scale)
    if pool < 1:
        raise ValueError(f"mix {mix} needs the number of training images to draw partners from (pool {pool}).")
    mixed = torch.rand(n, generator=generator) < mix
    partner = torch.randint(pool, (n,), generator=generator)
    own = torch.where(mixed, torch.rand(n, generator=generator), torch.ones(n))
    return Views(flip, shift, scale, partner, own)


def apply_views(x: torch.Tensor, views: Views, partner: torch.Tensor | None = None) -> torch.Tensor:
    """Each image of x (B, 3, H, W) float in its view: blended with `partner` (B, 3, H, W), the
    partner images prepared alike, when the views mix; then mirrored, zoomed and shifted (the
    same geometry for both), with zero fill."""
    if views.own is not None:
        if partner is None:
            raise ValueError("these views blend in partner images: pass them.")
        w = views.own.to(x.device, x.dtype).view(-1, 1, 1, 1)
        x = w * x + (1 - w) * partner
    b = x.shape[0]
    if views.flip.any():
        x = torch.where(views.flip.to(x.device).view(b, 1, 1, 1), x.flip(-1), x)
    if views.shift.any() or (views.scale != 1).any():
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = views.scale
        theta[:, :, 2] = views.shift
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x


def partner_pixels(
    images: Any, views: Views, device: torch.device, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor | None:
    """The partner images that `views` blend in, read from `images` (an array or tinycls.rows.Rows)
    and prepared as to_input does; None when the views do not mix."""
    if views.partner is None:
        return None
    return to_input(torch.from_numpy(images[views.partner.numpy()]).to(device), size, mean, std)


def mix_targets(y: torch.Tensor, partner_y: torch.Tensor, own: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class probabilities (B, C) blended as the pixels are: own * y + (1 - own) * partner_y;
    y and partner_y are class indices (B,) or probabilities (B, C)."""
    probs = lambda t: F.one_hot(t, num_classes).float() if t.ndim == 1 else t.float()  # noqa: E731
    w = own.to(y.device).view(-1, 1)
    return w * probs(y) + (1 - w) * probs(partner_y)


def augment(
    x: torch.Tensor, hflip: bool, translate: float, generator: torch.Generator, zoom: float = 1.0
) -> torch.Tensor:
    """Random horizontal flip, translation (fraction of the side) and zoom (draw_views), per image.

    Random numbers come from a CPU generator, so the same seed gives the same batches on any
    device. x: (B, 3, H, W) float.
    """
    return apply_views(x, draw_views(x.shape[0], hflip, translate, generator, zoom))
