"""Sampling a network from the template's seven-slot space, and fitting its width to the MACs budget."""

import math
from typing import Any

from tinycls.nas.config import (
    ACTS,
    KINDS,
    MAX_STRIDES,
    SLOTS,
    SPACES,
    NasConfig,
)


def max_strides(input_size: int) -> int:
    """Stride-2 slots allowed: the template's 5, fewer when the map would fall below 2x2."""
    return max(1, min(MAX_STRIDES, int(math.log2(input_size)) - 1))


def sample(trial: Any, cfg: NasConfig) -> tuple[dict[str, Any], int]:
    """A spec (tinycls.specnet format, before parse_spec; width_multiple 1.0) and an input size from
    the template's space (`cfg.space`'s ranges)."""
    space = SPACES[cfg.space]
    size = trial.suggest_categorical("input_size", list(cfg.input_sizes))
    top, strides, owed = max_strides(size), 0, 0
    backbone = []
    for i in range(1, SLOTS + 1):
        p = f"m{i}"
        kind = trial.suggest_categorical(p, list(KINDS[:2]) if i == 1 else list(KINDS))
        owed = max(owed, space["strides_by"].get(i, 0) - strides)  # strides this slot or the next ones must make
        if kind == "Pass":
            continue
        repeat = trial.suggest_int(f"{p}/repeat", 1, space["m1_repeat"] if i == 1 else 3)
        if strides >= top:
            stride = 1
        elif owed > 0:  # forced: not a parameter, so the sampler models only what has an effect
            stride = 2
        else:
            stride = trial.suggest_int(f"{p}/stride", 1, 2)
        if stride == 2:
            strides, owed = strides + 1, max(owed - 1, 0)
        if kind in ("Conv", "DWConv"):
            lo, hi = space["conv_out"][i - 1]
            out = trial.suggest_int(f"{p}/out", lo, hi, step=16 if lo % 16 == 0 else 8)
            kernel = 3 if i == 1 else trial.suggest_int(f"{p}/kernel", 1, 5, step=2)
            act = trial.suggest_categorical(f"{p}/act", list(ACTS))
            args = [out, kernel, stride, None, 1, act] if kind == "Conv" else [out, kernel, stride, None, act]
        elif kind == "InvertedResidualv2":
            lo, hi = space["ir_out"][i - 1]
            args = [trial.suggest_int(f"{p}/v2_c", lo, hi, step=8), trial.suggest_int(f"{p}/v2_t", 1, 6), stride]
        else:
            lo, hi = space["ir_out"][i - 1]
            args = [
                trial.suggest_int(f"{p}/v3_k", 3, 5, step=2),
                round(trial.suggest_float(f"{p}/v3_t", 1.0, 6.0, step=0.1), 1),
                trial.suggest_int(f"{p}/v3_c", lo, hi, step=8),
                trial.suggest_categorical(f"{p}/v3_se", [0, 1]),
                trial.suggest_categorical(f"{p}/v3_hs", [0, 1]),
                stride,
            ]
        backbone.append([repeat, kind, args])
    lo, hi, step = cfg.head_channels
    head = trial.suggest_int("head", lo, hi, step=step)
    return {"depth_multiple": 1.0, "width_multiple": 1.0, "backbone": backbone, "head": head}, size


def fit_width(raw: dict[str, Any], size: int, cfg: NasConfig, num_classes: int, source: str) -> tuple[dict, int, int]:
    """The sampled network at the largest of `cfg.width_multiples` within `cfg.max_macs`: (the
    parsed spec, MACs, params); at the smallest width when none fits (the caller prunes it).

    Raises:
        InputError: the network does not run at `size` (a kernel larger than its map, ...).
    """
    from tinycls.macs import count_macs
    from tinycls.specnet import build, check_input, parse_spec

    for k, width in enumerate(sorted(cfg.width_multiples, reverse=True)):
        spec = parse_spec({**raw, "width_multiple": float(width)}, source)
        if k == 0:
            check_input(spec, size, source)
        macs, params = count_macs(build(spec, num_classes), size)
        if macs <= cfg.max_macs:
            break
    return spec, macs, params
