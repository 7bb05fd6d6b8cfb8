"""Structured compression that really lowers MACs. So far: layer pruning, keeping the first k
blocks of each stage (the competition's ShuffleNetV1 [4-8-4] -> [2-5-2], 1,688,940 -> 1,083,210
MACs at 80 px). Channel pruning and group decomposition are to come (see the compression issue).
"""

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn


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


def keep_blocks(model: nn.Module, keep: Sequence[int], name: str = "model", probe_size: int = 64) -> nn.Module:
    """Keep the first keep[i] blocks of stage i (in place; returns the model).

    Raises:
        ValueError: the model has no stages of blocks, `keep` has another length than the
            stages, a count below 1 or above the stage's depth, or the dropped blocks would
            change the shape the stage hands on (they may only be shape-preserving blocks).
    """
    stages = block_stages(model)
    depths = [len(s) for _, s in stages]
    keep = [int(k) for k in keep]
    if not stages:
        raise ValueError(
            f"{name}: no stages of blocks found (pytorchcv features.stageN, timm body.blocks.N); "
            "layer pruning cannot remove blocks from it."
        )
    if len(keep) != len(stages):
        raise ValueError(f"keep_blocks {keep}: {len(keep)} entries, but {name} has {len(stages)} stages {depths}.")
    for i, (k, depth) in enumerate(zip(keep, depths, strict=True)):
        if not 1 <= k <= depth:
            raise ValueError(
                f"keep_blocks {keep}: stage {i + 1} has {depth} blocks; keep between 1 (its first block "
                f"changes width or resolution, so a stage cannot be empty) and {depth}."
            )
    shapes = _block_shapes(model, probe_size)
    for i, ((qual, stage), k) in enumerate(zip(stages, keep, strict=True)):
        if k == len(stage):
            continue
        handed_on = shapes[id(stage[len(stage) - 1])][1]
        if shapes[id(stage[k])][0] != handed_on:
            raise ValueError(
                f"keep_blocks {keep}: dropping blocks {k + 1}..{len(stage)} of stage {i + 1} ({qual}) changes "
                f"its output from {tuple(handed_on)} to {tuple(shapes[id(stage[k])][0])}; keep more blocks."
            )
        parent = model.get_submodule(qual.rsplit(".", 1)[0])
        # The kept blocks keep their names, so state dicts of the full model still fit them.
        setattr(parent, qual.rsplit(".", 1)[1], nn.Sequential(OrderedDict(list(stage.named_children())[:k])))
    return model
