"""The structure of a model as plain values, and how to rebuild it: its stages of repeated
blocks, which blocks a pruned model keeps, and the shape of every Conv2d, BatchNorm2d and Linear.

`tinycls.models.build_model` uses it to rebuild a compressed checkpoint's network
(`keep_blocks`, `layers` in its arch_kwargs); `tinycls.compress` uses it to prune. It imports
neither, so loading a checkpoint does not depend on the compression code.
"""

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tinycls.errors import InputError

BLOCK_SELECTIONS = ("first", "weight_std")


def block_stages(model: nn.Module) -> list[tuple[str, nn.Sequential]]:
    """The model's stages of repeated blocks, in order, as (qualified name, Sequential of blocks).

    pytorchcv classifiers keep them as `features.stage1`, `features.stage2`, ...; timm's
    EfficientNet / MobileNet families as `body.blocks.0`, `body.blocks.1`, ...
    """
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        found = [
            (f"features.{n}", m)
            for n, m in features.named_children()
            if n.startswith("stage") and isinstance(m, nn.Sequential)
        ]
        if found:
            return found
    blocks = getattr(getattr(model, "body", None), "blocks", None)
    if isinstance(blocks, nn.Sequential) and all(isinstance(m, nn.Sequential) for m in blocks):
        return [(f"body.blocks.{n}", m) for n, m in blocks.named_children()]
    return []


def stage_depths(model: nn.Module) -> list[int]:
    return [len(stage) for _, stage in block_stages(model)]


def _block_shapes(model: nn.Module, size: int) -> dict[int, tuple[torch.Size, torch.Size]]:
    """(input shape, output shape) of every block, by id, from one dry forward pass."""
    shapes: dict[int, tuple[torch.Size, torch.Size]] = {}
    hooks = [
        block.register_forward_hook(lambda m, i, o: shapes.__setitem__(id(m), (i[0].shape, o.shape)))
        for _, stage in block_stages(model)
        for block in stage
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes


def removable_blocks(model: nn.Module, probe_size: int = 64) -> list[list[bool]]:
    """Per stage, per block: can it go (its output has its input's shape)?"""
    shapes = _block_shapes(model, probe_size)
    return [[shapes[id(b)][0] == shapes[id(b)][1] for b in stage] for _, stage in block_stages(model)]


def block_weight_std(model: nn.Module) -> list[list[float]]:
    """Per stage, per block: the std of all its conv and linear weights together."""
    out = []
    for _, stage in block_stages(model):
        row = []
        for block in stage:
            w = [m.weight.detach().flatten() for m in block.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            row.append(float(torch.cat(w).std()) if w else 0.0)
        out.append(row)
    return out


def _no_stages(name: str) -> InputError:
    return InputError(
        f"{name}: no stages of blocks found (pytorchcv features.stageN, timm body.blocks.N); "
        "layer pruning cannot remove blocks from it."
    )


def choose_blocks(
    model: nn.Module, counts: Sequence[int], selection: str = "first", name: str = "model", probe_size: int = 64
) -> list[list[int]]:
    """Indices of the blocks to keep: counts[i] of stage i, either its first ones or (weight_std)
    those that cannot go plus the removable ones with the largest weight std, in stage order.

    Raises:
        ValueError: no stages, `counts` of another length than the stages, a count below 1 or
            above the stage's depth, fewer than the blocks that cannot go, or an unknown selection.
    """
    if selection not in BLOCK_SELECTIONS:
        raise InputError(f"block_selection: {selection!r} is not one of {', '.join(BLOCK_SELECTIONS)}.")
    stages = block_stages(model)
    if not stages:
        raise _no_stages(name)
    depths = [len(s) for _, s in stages]
    counts = [int(k) for k in counts]
    if len(counts) != len(stages):
        raise InputError(f"keep_blocks {counts}: {len(counts)} entries, but {name} has {len(stages)} stages {depths}.")
    for i, (k, depth) in enumerate(zip(counts, depths, strict=True)):
        if not 1 <= k <= depth:
            raise InputError(
                f"keep_blocks {counts}: stage {i + 1} has {depth} blocks; keep between 1 (its first block "
                f"changes width or resolution, so a stage cannot be empty) and {depth}."
            )
    if selection == "first":
        return [list(range(k)) for k in counts]
    removable, std = removable_blocks(model, probe_size), block_weight_std(model)
    keep = []
    for i, k in enumerate(counts):
        fixed = [j for j, r in enumerate(removable[i]) if not r]
        if k < len(fixed):
            raise InputError(
                f"keep_blocks {counts}: stage {i + 1} has {len(fixed)} blocks that change shape and must stay "
                f"(blocks {[j + 1 for j in fixed]}); keep at least {len(fixed)}."
            )
        by_std = sorted((j for j, r in enumerate(removable[i]) if r), key=lambda j: -std[i][j])
        keep.append(sorted(fixed + by_std[: k - len(fixed)]))
    return keep


def keep_blocks(
    model: nn.Module, keep: Sequence[int] | Sequence[Sequence[int]], name: str = "model", probe_size: int = 64
) -> nn.Module:
    """Layer pruning, in place (returns the model): keep[i] is the number of first blocks of
    stage i to keep, or the list of the indices to keep.

    Raises:
        ValueError: the model has no stages of blocks, `keep` has another length than the
            stages, a count below 1 or above the stage's depth, an index out of range, or a
            dropped block changes the shape it hands on (only shape-preserving blocks may go).
    """
    if keep and all(isinstance(k, (int, float)) for k in keep):
        keep = choose_blocks(model, keep, "first", name, probe_size)  # type: ignore[arg-type]
    stages = block_stages(model)
    if not stages:
        raise _no_stages(name)
    depths = [len(s) for _, s in stages]
    keep = [sorted({int(j) for j in k}) for k in keep]  # type: ignore[union-attr]
    if len(keep) != len(stages):
        raise InputError(f"keep_blocks {keep}: {len(keep)} entries, but {name} has {len(stages)} stages {depths}.")
    for i, (k, depth) in enumerate(zip(keep, depths, strict=True)):
        if not k or k[0] < 0 or k[-1] >= depth:
            raise InputError(f"keep_blocks {keep}: stage {i + 1} has blocks 0..{depth - 1}; keep at least one of them.")
    shapes = _block_shapes(model, probe_size)
    for i, ((qual, stage), k) in enumerate(zip(stages, keep, strict=True)):
        if len(k) == len(stage):
            continue
        for j, block in enumerate(stage):
            if j not in k and shapes[id(block)][0] != shapes[id(block)][1]:
                raise InputError(
                    f"keep_blocks {keep}: block {j + 1} of stage {i + 1} ({qual}) changes the shape from "
                    f"{tuple(shapes[id(block)][0])} to {tuple(shapes[id(block)][1])}; it cannot be dropped."
                )
        parent = model.get_submodule(qual.rsplit(".", 1)[0])
        # The kept blocks keep their names, so state dicts of the full model still fit them.
        children = list(stage.named_children())
        setattr(parent, qual.rsplit(".", 1)[1], nn.Sequential(OrderedDict(children[j] for j in k)))
    return model


LAYER_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """[in, out, groups] of every Conv2d, [features] of every BatchNorm2d, [in, out] of every Linear."""
    out: dict[str, list[int]] = {}
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[n] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.BatchNorm2d):
            out[n] = [m.num_features]
        elif isinstance(m, nn.Linear):
            out[n] = [m.in_features, m.out_features]
    return out


def reshape_layers(model: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Give the named layers the recorded shapes (fresh, uninitialized tensors: a state dict
    fills them), in place. Other attributes (kernel, stride, bias or not) stay.

    Raises:
        ValueError: a name that is no Conv2d / BatchNorm2d / Linear of the model.
    """
    modules = dict(model.named_modules())
    for n, shape in shapes.items():
        m = modules.get(n)
        if not isinstance(m, LAYER_TYPES):
            raise InputError(
                f"layers: {n!r} is no Conv2d, BatchNorm2d or Linear of this model; the checkpoint is of another one."
            )
        like = {"device": m.weight.device if m.weight is not None else None}
        if isinstance(m, nn.Conv2d):
            m.in_channels, m.out_channels, m.groups = (int(v) for v in shape)
            m.weight = nn.Parameter(torch.empty(m.out_channels, m.in_channels // m.groups, *m.kernel_size, **like))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.empty(m.out_channels, **like))
        elif isinstance(m, nn.BatchNorm2d):
            m.num_features = c = int(shape[0])
            if m.affine:
                m.weight, m.bias = nn.Parameter(torch.ones(c, **like)), nn.Parameter(torch.zeros(c, **like))
            if m.track_running_stats:
                m.running_mean, m.running_var = torch.zeros(c, **like), torch.ones(c, **like)
        else:
            m.in_features, m.out_features = (int(v) for v in shape)
            m.weight = nn.Parameter(torch.empty(m.out_features, m.in_features, **like))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.empty(m.out_features, **like))
    return model


@dataclass
class Structure:
    """What compression did, in plain values."""

    keep_blocks: list[list[int]] | None = None  # indices kept per stage; None = all
    split: list[str] = field(default_factory=list)  # convs whose groups were split
    channel_ratio: float = 0.0  # Torch-Pruning ratio applied (from channel_ratio or target_macs)
    layers: dict[str, list[int]] = field(default_factory=dict)  # layers whose shape changed

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        """For build_model / a checkpoint's arch_kwargs: rebuilds exactly this network."""
        out: dict[str, Any] = {}
        if self.keep_blocks is not None:
            out["keep_blocks"] = self.keep_blocks
        if self.layers:
            out["layers"] = self.layers
        return out

    def describe(self) -> str:
        parts = []
        if self.keep_blocks is not None:
            parts.append(f"blocks {[len(k) for k in self.keep_blocks]}")
        if self.split:
            parts.append(f"{len(self.split)} grouped convs split")
        if self.channel_ratio:
            parts.append(f"channels -{self.channel_ratio:.1%}")
        return ", ".join(parts) or "none"
