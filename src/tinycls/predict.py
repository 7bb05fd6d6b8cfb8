"""Inference on the decoded cache or on a folder of image files."""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinycls.images import DECODE_ERRORS, load_rgb, square_pad_resize
from tinycls.transforms import to_input


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    batch_size: int = 512,
) -> torch.Tensor:
    """Logits (N, K) on CPU for uint8 images (N, S, S, 3); puts the model in eval mode."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i : i + batch_size]).to(device)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            out.append(model(to_input(x, input_size, mean, std)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def predict_checkpoint(
    model: nn.Module, meta: dict, images: np.ndarray, device: torch.device, batch_size: int = 512
) -> torch.Tensor:
    """predict_logits with the input size and normalization a checkpoint recorded."""
    return predict_logits(
        model, images, meta["input_size"], tuple(meta["mean"]), tuple(meta["std"]), device, batch_size
    )


def load_folder(image_dir: Path, size: int) -> tuple[list[Path], np.ndarray]:
    """Every visible file under image_dir (recursive, sorted), decoded and square-padded.

    Raises:
        FileNotFoundError: image_dir is missing or holds no files.
        ValueError: a file is not a readable image (named in the message).
    """
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: no such folder of images.")
    files = sorted(p for p in image_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{image_dir}: holds no files to predict.")
    arrays = []
    for f in files:
        try:
            arrays.append(square_pad_resize(load_rgb(f), size))
        except DECODE_ERRORS as e:
            raise ValueError(f"{f}: not a readable image ({type(e).__name__}: {e}); remove or repair it.") from e
    return files, np.stack(arrays)
