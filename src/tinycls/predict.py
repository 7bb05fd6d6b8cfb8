"""Inference on decoded images (the prepared cache's, or a folder's that tinycls.data decoded):
logits in batches, in the preprocessing a checkpoint records."""

import numpy as np
import torch
from torch import nn

from tinycls.transforms import Views, apply_views, partner_pixels, to_input


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    batch_size: int = 512,
    amp: bool = True,
    hflip: bool = False,
    views: Views | None = None,
) -> torch.Tensor:
    """Logits (N, K) on CPU for uint8 images (N, S, S, 3), an array or tinycls.rows.Rows read a
    batch at a time; puts the model in eval mode. `amp`: mixed precision on CUDA. `hflip`: of
    the mirrored images. `views`: each image's augmented view (tinycls.transforms.Views of shape
    (N,), partners indexing `images`), applied at `input_size`."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i : i + batch_size]).to(device)
        x = x.flip(2) if hflip else x  # (N, S, S, 3): the width axis
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            x = to_input(x, input_size, mean, std)
            if views is not None:
                v = views[i : i + batch_size]
                x = apply_views(x, v, partner_pixels(images, v, device, input_size, mean, std))
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def predict_checkpoint(
    model: nn.Module, meta: dict, images: np.ndarray, device: torch.device, batch_size: int = 512, hflip: bool = False
) -> torch.Tensor:
    """predict_logits with the input size and normalization a checkpoint recorded."""
    return predict_logits(
        model, images, meta["input_size"], tuple(meta["mean"]), tuple(meta["std"]), device, batch_size, hflip=hflip
    )
