"""Checkpoints: the file format (plain-typed meta beside the state dict, so
`torch.load(weights_only=True)` works and a checkpoint rebuilds its own model), the meta every
trainer writes, the class check every reader makes, and copying weights between models.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinycls.models import build_model
from tinycls.transforms import IMAGENET_MEAN, IMAGENET_STD


def checkpoint_meta(
    arch: str,
    classes: Sequence[str],
    input_size: int,
    arch_kwargs: dict[str, Any] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    **extra: Any,
) -> dict[str, Any]:
    """What `save_checkpoint` needs beside the weights: `build_model(arch, len(classes),
    **arch_kwargs)` rebuilds the network, input_size/mean/std prepare its input; extra keys
    (stage, compression, ...) ride along, plain types only."""
    return {
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "classes": list(classes),
        "input_size": int(input_size),
        "mean": list(mean),
        "std": list(std),
        **extra,
    }


def transfer_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Copy every tensor of `state_dict` whose name and shape match one of `model`'s.

    Returns:
        (tensors transferred, tensors of state_dict skipped).
    """
    own = model.state_dict()
    match = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(match, strict=False)
    return len(match), len(state_dict) - len(match)


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write {meta..., state_dict} atomically (a Ctrl-C mid-write leaves the old file).

    `meta` holds plain types only (arch, arch_kwargs, classes, input_size, mean, std, ...), so
    `torch.load(path, weights_only=True)` works and the checkpoint rebuilds its own model.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**meta, "state_dict": state}, tmp)
    os.replace(tmp, path)


REQUIRED_META = ("arch", "arch_kwargs", "classes", "input_size", "mean", "std", "state_dict")


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu", classes: Sequence[str] | None = None, role: str = ""
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights; returns (model, meta).
    With `classes`, the checkpoint must have been trained on exactly these (in this order);
    `role` ("teacher", ...) names it in that error.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is corrupt, not a tinycls checkpoint, or of other classes.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint; train one with `dvc repro` first.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {e}); re-create it with `dvc repro`."
        ) from e
    missing = [k for k in REQUIRED_META if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a tinycls checkpoint (missing {missing}).")
    if classes is not None and list(ckpt["classes"]) != list(classes):
        raise ValueError(
            f"{path}: {role + ' ' if role else ''}classes {ckpt['classes']} differ from the data's {list(classes)}; "
            "retrain it on this dataset (`dvc repro`)."
        )
    model = build_model(ckpt["arch"], len(ckpt["classes"]), **ckpt["arch_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(device).eval(), meta
