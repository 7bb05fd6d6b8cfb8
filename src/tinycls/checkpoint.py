"""Checkpoints: the file format (plain-typed meta beside the state dict, so
`torch.load(weights_only=True)` works and a checkpoint rebuilds its own model), the meta every
trainer writes, the class check every reader makes, and copying weights between models.
"""

import math
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinycls.errors import InputError, MissingInput, brief
from tinycls.model_meta import MAX_NUMBERS, check_preprocessing, foreign, refusal
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
    (stage, compression, cache_size: the side images were square-padded and resized to before
    the model's own resize, which `tinycls predict` repeats, ...) ride along, plain types only."""
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
ARCH_KWARGS = ("keep_blocks", "layers", "spec")  # all tinycls writes: what compression changed, a nas: spec


def _ints(value: Any, low: int) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value)


def check_meta(path: Path, ckpt: dict[str, Any]) -> None:
    """A checkpoint from elsewhere is data, never instructions: only the keys and value shapes
    tinycls writes may reach the model factories (timm and pytorchcv would act on `pretrained`,
    a weights URL or a `checkpoint_path` they then unpickle).

    Raises:
        ValueError: the first bad field, named with its value and the fix.
    """

    bad = partial(refusal, path)
    arch, kwargs = ckpt["arch"], ckpt["arch_kwargs"]
    if not isinstance(arch, str) or arch.count(":") != 1:
        raise bad("arch", arch, "SOURCE:NAME, e.g. pytorchcv:shufflenet_g3_wd4")
    if not isinstance(kwargs, dict) or (extra := sorted(set(kwargs) - set(ARCH_KWARGS))):
        raise bad("arch_kwargs", kwargs, f"a mapping with keys among {', '.join(ARCH_KWARGS)}; not {extra}")
    blocks = kwargs.get("keep_blocks")
    if blocks is not None and not (
        isinstance(blocks, list) and (_ints(blocks, 1) or all(_ints(b, 0) and b for b in blocks))
    ):
        raise bad("arch_kwargs.keep_blocks", blocks, "block counts or lists of block indices, one per stage")
    if "spec" in kwargs:
        from tinycls.specnet import parse_spec

        if not arch.startswith("nas:"):
            raise bad("arch_kwargs.spec", kwargs["spec"], "a spec only for nas: networks")
        try:
            parse_spec(kwargs["spec"], f"{path}: arch_kwargs.spec")
        except InputError as e:
            raise bad("arch_kwargs.spec", kwargs["spec"], f"a tinycls.specnet spec: {e}") from None
    elif arch.startswith("nas:"):
        raise bad("arch_kwargs", kwargs, "a nas: network's spec under arch_kwargs.spec")
    layers = kwargs.get("layers", {})
    if not isinstance(layers, dict) or not all(
        isinstance(k, str) and _ints(v, 1) and 1 <= len(v) <= 3 for k, v in layers.items()
    ):
        raise bad("arch_kwargs.layers", layers, "layer name -> [in, out, groups], [features] or [in, out]")
    check_preprocessing(path, ckpt)


def check_size(path: Path, ckpt: dict[str, Any]) -> None:
    """Build the recorded network on the meta device (shapes only, no memory) and refuse it when
    it holds more than MAX_NUMBERS numbers or its shapes are not those of the file's weights:
    a few bytes of meta must not make tinycls allocate gigabytes before load_state_dict fails.

    Raises:
        InputError: too large, or weights of another network.
    """
    try:
        with torch.device("meta"):
            model = build_model(ckpt["arch"], len(ckpt["classes"]), **ckpt["arch_kwargs"])
    except InputError as e:  # e.g. a pruned layer the network does not have
        raise InputError(f"{path}: {e}") from None
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    numbers = sum(math.prod(s) for s in shapes.values())
    if numbers > MAX_NUMBERS:
        raise foreign(
            path,
            f"the network it records ({ckpt['arch']}, arch_kwargs {brief(ckpt['arch_kwargs'])}) holds "
            f"{numbers:,} weights, above the {MAX_NUMBERS:,} tinycls loads",
        )
    weights = ckpt["state_dict"]
    found = (
        {k: tuple(v.shape) if isinstance(v, torch.Tensor) else "not a tensor" for k, v in weights.items()}
        if isinstance(weights, dict)
        else {}
    )
    if found != shapes:
        diff = sorted((k for k in set(found) | set(shapes) if found.get(k) != shapes.get(k)), key=str)
        show = "; ".join(
            f"{brief(k)}: {found.get(k, 'missing')} in the file, {shapes.get(k, 'none')} in the network"
            for k in diff[:3]
        )
        differ = f"{len(diff)} tensors differ; {show}"
        raise foreign(path, f"its weights are not those of the network its meta records ({differ})")


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
        raise MissingInput(f"{path}: no such checkpoint; train one with `dvc repro` first.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {e}); re-create it with `dvc repro`."
        ) from e
    missing = [k for k in REQUIRED_META if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise InputError(f"{path}: not a tinycls checkpoint (missing {missing}).")
    check_meta(Path(path), ckpt)
    if classes is not None and list(ckpt["classes"]) != list(classes):
        raise InputError(
            f"{path}: {role + ' ' if role else ''}classes {brief(ckpt['classes'])} differ from the data's "
            f"{brief(list(classes))}; "
            "retrain it on this dataset (`dvc repro`)."
        )
    check_size(Path(path), ckpt)
    model = build_model(ckpt["arch"], len(ckpt["classes"]), **ckpt["arch_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(device).eval(), meta
