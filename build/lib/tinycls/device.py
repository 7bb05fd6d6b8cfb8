"""Where models run: `auto` (CUDA when present, else CPU), `cpu` or `cuda`."""

import torch

from tinycls.errors import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU.

    Raises:
        ValueError: 'cuda' asked for on a machine without CUDA.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device: 'cuda' asked for but CUDA is not available; use 'auto' or 'cpu'.")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")
