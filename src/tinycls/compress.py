"""Structured compression that really lowers MACs (zeroed weights do not):

- layer pruning: keep some blocks of each stage (the competition's ShuffleNetV1 [4-8-4] ->
  [2-5-2], 1,688,940 -> 1,083,210 MACs at 80 px), the first k or those with the largest weight
  std (the team dropped blocks whose weights were near zero);
- group decomposition: a grouped conv split into `factor` times more groups (3 -> 6), keeping
  the block-diagonal part of each group's weights;
- channel pruning with Torch-Pruning (dependency-aware: residual adds, concats and depthwise
  convs pruned together), by ratio or down to a MACs target.

A compressed model is described by plain values (`Structure.arch_kwargs`): the blocks kept and
the shape of every layer that changed, so `tinycls.models.build_model` rebuilds it and a
checkpoint loads with `weights_only=True`.
"""

import copy
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

BLOCK_SELECTIONS = ("first", "weight_std")
IMPORTANCES = {"l1": 1, "l2": 2}  # Torch-Pruning GroupMagnitudeImportance p
MAX_CHANNEL_RATIO = 0.9  # the most target_macs may prune; every layer keeps >= 10% of its channels


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


def _no_stages(name: str) -> ValueError:
    return ValueError(
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
        raise ValueError(f"block_selection: {selection!r} is not one of {', '.join(BLOCK_SELECTIONS)}.")
    stages = block_stages(model)
    if not stages:
        raise _no_stages(name)
    depths = [len(s) for _, s in stages]
    counts = [int(k) for k in counts]
    if len(counts) != len(stages):
        raise ValueError(f"keep_blocks {counts}: {len(counts)} entries, but {name} has {len(stages)} stages {depths}.")
    for i, (k, depth) in enumerate(zip(counts, depths, strict=True)):
        if not 1 <= k <= depth:
            raise ValueError(
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
            raise ValueError(
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
        raise ValueError(f"keep_blocks {keep}: {len(keep)} entries, but {name} has {len(stages)} stages {depths}.")
    for i, (k, depth) in enumerate(zip(keep, depths, strict=True)):
        if not k or k[0] < 0 or k[-1] >= depth:
            raise ValueError(f"keep_blocks {keep}: stage {i + 1} has blocks 0..{depth - 1}; keep at least one of them.")
    shapes = _block_shapes(model, probe_size)
    for i, ((qual, stage), k) in enumerate(zip(stages, keep, strict=True)):
        if len(k) == len(stage):
            continue
        for j, block in enumerate(stage):
            if j not in k and shapes[id(block)][0] != shapes[id(block)][1]:
                raise ValueError(
                    f"keep_blocks {keep}: block {j + 1} of stage {i + 1} ({qual}) changes the shape from "
                    f"{tuple(shapes[id(block)][0])} to {tuple(shapes[id(block)][1])}; it cannot be dropped."
                )
        parent = model.get_submodule(qual.rsplit(".", 1)[0])
        # The kept blocks keep their names, so state dicts of the full model still fit them.
        children = list(stage.named_children())
        setattr(parent, qual.rsplit(".", 1)[1], nn.Sequential(OrderedDict(children[j] for j in k)))
    return model


def splittable_convs(model: nn.Module, factor: int) -> list[str]:
    """Grouped (not depthwise) convs whose groups' in and out channels divide by `factor`."""
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
        and 1 < m.groups < m.in_channels
        and (m.in_channels // m.groups) % factor == 0
        and (m.out_channels // m.groups) % factor == 0
    ]


def split_groups(model: nn.Module, factor: int, name: str = "model") -> list[str]:
    """Group decomposition, in place: every grouped conv whose shape allows it gets `factor`
    times more groups; each new group keeps the block-diagonal part of its old group's weights
    (the cross terms are dropped, so that conv's MACs and weights shrink by `factor`).
    Returns the names of the convs split.

    Raises:
        ValueError: factor < 2, or no grouped conv of the model can be split by it.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ValueError(f"split_groups: {factor!r} must be an integer >= 2 (1 = off).")
    names = splittable_convs(model, factor)
    if not names:
        grouped = [
            f"{n} ({m.in_channels}->{m.out_channels}, groups {m.groups})"
            for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels
        ]
        raise ValueError(
            f"split_groups {factor}: {name} has no grouped conv whose groups' channels divide by {factor} "
            f"(grouped convs: {grouped[:4] or 'none'}); set compress.split_groups: 1."
        )
    for n in names:
        conv = model.get_submodule(n)
        g, out, cin = conv.groups, conv.out_channels, conv.in_channels // conv.groups
        w = conv.weight.detach()  # (out, cin, kh, kw): group G's rows see inputs G*cin .. (G+1)*cin
        w = w.reshape(g, factor, out // (g * factor), factor, cin // factor, *w.shape[2:])
        w = torch.diagonal(w, dim1=1, dim2=3)  # (g, out/(g f), cin/f, kh, kw, f): sub-block f sees sub-slice f
        w = w.permute(0, 5, 1, 2, 3, 4).reshape(out, cin // factor, *conv.weight.shape[2:])
        conv.groups = g * factor
        conv.weight = nn.Parameter(w.contiguous())
    return names


def prune_channels(
    model: nn.Module, ratio: float, input_size: int, importance: str = "l2", name: str = "model"
) -> nn.Module:
    """Channel pruning with Torch-Pruning's MetaPruner: `ratio` of the channels of every
    prunable group removed, smallest L1/L2 norm first; the classifier keeps its outputs.
    Returns a pruned copy (the model is left as it was).

    Raises:
        ValueError: ratio outside (0, 1), an unknown importance, or a model Torch-Pruning
            cannot prune consistently (channel shuffles, channel splits).
    """
    import torch_pruning as tp

    from tinycls.models import classifier_layer

    if isinstance(ratio, bool) or not 0.0 < ratio < 1.0:
        raise ValueError(f"channel_ratio: {ratio!r} must be in (0, 1): the share of channels removed.")
    if importance not in IMPORTANCES:
        raise ValueError(f"importance: {importance!r} is not one of {', '.join(IMPORTANCES)}.")
    shuffles = [n for n, m in model.named_modules() if "Shuffle" in type(m).__name__ and not any(m.children())]
    advice = (
        "Torch-Pruning follows channels through adds, concats and depthwise convs, not through this. Use "
        "compress.keep_blocks or compress.split_groups for this model, or a student without channel shuffles "
        "(e.g. pytorchcv:fdmobilenet_wd4, pytorchcv:mobilenetv3_small_w7d20, pytorchcv:mnasnet_small)."
    )
    if shuffles:
        raise ValueError(
            f"channel pruning of {name}: it shuffles channels ({shuffles[0]}, {len(shuffles)} in all). {advice}"
        )
    pruned = copy.deepcopy(model).eval()
    example = torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device)
    try:
        pruner = tp.pruner.MetaPruner(
            pruned,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=IMPORTANCES[importance]),
            pruning_ratio=float(ratio),
            ignored_layers=[classifier_layer(pruned)[1]],  # it keeps the class count
        )
        pruner.step()
        with torch.no_grad():
            pruned(example)
    except (RuntimeError, ValueError, IndexError, TypeError, ZeroDivisionError) as e:
        raise ValueError(f"channel pruning of {name} failed ({type(e).__name__}: {str(e)[:160]}). {advice}") from e
    return pruned.train(model.training)


def prune_to_macs(
    model: nn.Module, target: int, input_size: int, importance: str = "l2", name: str = "model", steps: int = 12
) -> tuple[nn.Module, float]:
    """The least channel pruning (bisection on the ratio) whose MACs are <= `target`; returns
    (pruned copy, ratio). A model already within the target comes back as it is, ratio 0.

    Raises:
        ValueError: target < 1, or even MAX_CHANNEL_RATIO of the channels gone leaves more MACs.
    """
    from tinycls.macs import count_macs

    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ValueError(f"target_macs: {target!r} must be a positive integer (0 = off).")
    if count_macs(model, input_size)[0] <= target:
        return model, 0.0
    lo, hi = 0.0, MAX_CHANNEL_RATIO
    best = prune_channels(model, hi, input_size, importance, name)
    floor = count_macs(best, input_size)[0]
    if floor > target:
        raise ValueError(
            f"target_macs {target:,}: below what channel pruning reaches on {name} ({floor:,} MACs with "
            f"{MAX_CHANNEL_RATIO:.0%} of the channels gone, at {input_size} px). Lower student.input_size, keep fewer "
            "blocks (compress.keep_blocks), or raise target_macs."
        )
    for _ in range(steps):
        mid = (lo + hi) / 2
        candidate = prune_channels(model, mid, input_size, importance, name)
        if count_macs(candidate, input_size)[0] <= target:
            hi, best = mid, candidate
        else:
            lo = mid
    return best, hi


def recalibrate_bn(
    model: nn.Module,
    images: np.ndarray,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> nn.Module:
    """Re-estimate the BatchNorm running statistics (in place) on uint8 images (N, S, S, 3):
    dropped blocks and split or pruned convs change what every later BatchNorm sees, and its
    old statistics then wreck the outputs. torch's swa_utils.update_bn resets them and takes a
    cumulative average over the batches; no weight changes."""
    from torch.optim.swa_utils import update_bn

    from tinycls.transforms import to_input

    device = torch.device(device)
    batches = (
        to_input(torch.from_numpy(images[i : i + batch_size]).to(device), input_size, tuple(mean), tuple(std))
        for i in range(0, len(images), batch_size)
    )
    with torch.no_grad():
        update_bn(batches, model.to(device), device)
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
            raise ValueError(
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


def compress(
    model: nn.Module,
    input_size: int,
    keep: Sequence[int] | None = None,
    selection: str = "first",
    split_factor: int = 1,
    channel_ratio: float = 0.0,
    target_macs: int = 0,
    importance: str = "l2",
    name: str = "model",
) -> tuple[nn.Module, Structure]:
    """Layer pruning, then group decomposition, then channel pruning (by target_macs when > 0,
    else by channel_ratio when > 0), each skipped when off. Returns a compressed copy and its
    Structure; `build_model(arch, classes, **structure.arch_kwargs)` rebuilds its shape.

    Raises:
        ValueError: any bad setting (see choose_blocks, split_groups, prune_channels, prune_to_macs).
    """
    reference = copy.deepcopy(model)
    out = copy.deepcopy(model)
    s = Structure()
    if keep:
        s.keep_blocks = choose_blocks(out, keep, selection, name, input_size)
        keep_blocks(out, s.keep_blocks, name, input_size)
        keep_blocks(reference, s.keep_blocks, name, input_size)
    if split_factor != 1:
        s.split = split_groups(out, split_factor, name)
    if target_macs:
        out, s.channel_ratio = prune_to_macs(out, target_macs, input_size, importance, name)
    elif channel_ratio:
        out = prune_channels(out, channel_ratio, input_size, importance, name)
        s.channel_ratio = float(channel_ratio)
    before, after = layer_shapes(reference), layer_shapes(out)
    s.layers = {n: shape for n, shape in after.items() if before.get(n) != shape}
    # What a checkpoint records must rebuild this very network: check it now, not at load time.
    rebuilt = reshape_layers(reference, s.layers).state_dict()
    odd = [k for k, v in out.state_dict().items() if k not in rebuilt or rebuilt[k].shape != v.shape]
    if odd:
        raise ValueError(
            f"{name}: compression changed {odd[:3]}, which a checkpoint cannot record (it records Conv2d, "
            "BatchNorm2d and Linear shapes); turn channel pruning off for this model."
        )
    return out, s
