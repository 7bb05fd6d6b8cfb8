"""Structured compression that really lowers MACs (zeroed weights do not):

- layer pruning: keep some blocks of each stage (the competition's ShuffleNetV1 [4-8-4] ->
  [2-5-2], 1,688,940 -> 1,083,210 MACs at 80 px), the first k or those with the largest weight
  std (the team dropped blocks whose weights were near zero);
- group decomposition: a grouped conv split into `factor` times more groups (3 -> 6), keeping
  the block-diagonal part of each group's weights;
- channel pruning with Torch-Pruning (dependency-aware: residual adds, concats and depthwise
  convs pruned together), by ratio or down to a MACs target.

A compressed model is described by plain values (`tinycls.structure.Structure.arch_kwargs`): the
blocks kept and the shape of every layer that changed, so `tinycls.models.build_model` rebuilds
it and a checkpoint loads with `weights_only=True`.
"""

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tinycls.errors import InputError
from tinycls.macs import count_macs
from tinycls.models import classifier_layer
from tinycls.structure import Structure, choose_blocks, keep_blocks, layer_shapes, reshape_layers
from tinycls.transforms import to_input

IMPORTANCES = {"l1": 1, "l2": 2}  # Torch-Pruning GroupMagnitudeImportance p
MAX_CHANNEL_RATIO = 0.9  # the most target_macs may prune; every layer keeps >= 10% of its channels


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
        raise InputError(f"split_groups: {factor!r} must be an integer >= 2 (1 = off).")
    names = splittable_convs(model, factor)
    if not names:
        grouped = [
            f"{n} ({m.in_channels}->{m.out_channels}, groups {m.groups})"
            for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels
        ]
        raise InputError(
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

    if isinstance(ratio, bool) or not 0.0 < ratio < 1.0:
        raise InputError(f"channel_ratio: {ratio!r} must be in (0, 1): the share of channels removed.")
    if importance not in IMPORTANCES:
        raise InputError(f"importance: {importance!r} is not one of {', '.join(IMPORTANCES)}.")
    shuffles = [n for n, m in model.named_modules() if "Shuffle" in type(m).__name__ and not any(m.children())]
    advice = (
        "Torch-Pruning follows channels through adds, concats and depthwise convs, not through this. Use "
        "compress.keep_blocks or compress.split_groups for this model, or a student without channel shuffles "
        "(e.g. pytorchcv:fdmobilenet_wd4, pytorchcv:mobilenetv3_small_w7d20, pytorchcv:mnasnet_small)."
    )
    if shuffles:
        raise InputError(
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
        raise InputError(f"channel pruning of {name} failed ({type(e).__name__}: {str(e)[:160]}). {advice}") from e
    return pruned.train(model.training)


def prune_to_macs(
    model: nn.Module, target: int, input_size: int, importance: str = "l2", name: str = "model", steps: int = 12
) -> tuple[nn.Module, float]:
    """The least channel pruning (bisection on the ratio) whose MACs are <= `target`; returns
    (pruned copy, ratio). A model already within the target comes back as it is, ratio 0.

    Raises:
        ValueError: target < 1, or even MAX_CHANNEL_RATIO of the channels gone leaves more MACs.
    """
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise InputError(f"target_macs: {target!r} must be a positive integer (0 = off).")
    if count_macs(model, input_size)[0] <= target:
        return model, 0.0
    lo, hi = 0.0, MAX_CHANNEL_RATIO
    best = prune_channels(model, hi, input_size, importance, name)
    floor = count_macs(best, input_size)[0]
    if floor > target:
        raise InputError(
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

    device = torch.device(device)
    batches = (
        to_input(torch.from_numpy(images[i : i + batch_size]).to(device), input_size, tuple(mean), tuple(std))
        for i in range(0, len(images), batch_size)
    )
    with torch.no_grad():
        update_bn(batches, model.to(device), device)
    return model


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
        raise InputError(
            f"{name}: compression changed {odd[:3]}, which a checkpoint cannot record (it records Conv2d, "
            "BatchNorm2d and Linear shapes); turn channel pruning off for this model."
        )
    return out, s
