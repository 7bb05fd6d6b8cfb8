"""Networks from a spec: the competition template's YAML format, as the third model source
(`nas:<file.yaml>`, beside `timm:` and `pytorchcv:`).

A spec is a backbone, a list of `[repeat, Module, args]`, then `head` (the 1x1 conv's channels
before global pooling) and the usual bias-free 1x1 conv classifier:

    depth_multiple: 1.0      # repeat r > 1 becomes max(round(r * depth_multiple), 1)
    width_multiple: 1.0      # channels c become c * width_multiple rounded up to a multiple of 8
    backbone:
      - [1, Conv, [16, 3, 2]]                      # out, kernel[, stride, padding, groups, act]
      - [1, DWConv, [16, 3, 1]]                    # out, kernel[, stride, padding, act]
      - [2, InvertedResidualv2, [24, 4, 2]]        # out, expansion t, stride (MobileNetV2)
      - [1, InvertedResidualv3, [5, 3.0, 40, 1, 1, 2]]  # kernel, t, out, SE 0/1, hard-swish 0/1, stride
      - [1, Pass, []]                              # an empty slot
    head: 256

Modules are those of the template (`Conv`: conv, BatchNorm, activation, "same" padding when
padding is null; `DWConv`: the same with groups = gcd(in, out); MobileNetV2 and MobileNetV3
inverted residuals). As in the template, a repeated Conv or DWConv strides in its last copy, an
inverted residual in its first. The checkpoint records the parsed spec itself (arch_kwargs
`spec`), so it rebuilds without the file. Sizes are bounded (LIMITS): a spec recorded in a
checkpoint from elsewhere must not be able to allocate without limit.

"""

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinycls.errors import InputError, brief
from tinycls.heads import ConvHead

ACTIVATIONS = {"ReLU": nn.ReLU, "ReLU6": nn.ReLU6, "Hardswish": nn.Hardswish, "SiLU": nn.SiLU, "Identity": nn.Identity}
# name -> (argument names, how many are required, defaults of the rest)
MODULES: dict[str, tuple[tuple[str, ...], int, tuple[Any, ...]]] = {
    "Conv": (("out", "kernel", "stride", "padding", "groups", "act"), 2, (1, None, 1, "ReLU")),
    "DWConv": (("out", "kernel", "stride", "padding", "act"), 2, (1, None, "ReLU")),
    "InvertedResidualv2": (("out", "t", "stride"), 3, ()),
    "InvertedResidualv3": (("kernel", "t", "out", "SE", "HS", "stride"), 6, ()),
    "Pass": ((), 0, ()),
}
KEYS = ("depth_multiple", "width_multiple", "backbone", "head")
# upper bounds of a spec's numbers (far above any tiny network): channels, kernel, stride, repeat
LIMITS = {"out": 4096, "groups": 4096, "kernel": 15, "stride": 4, "padding": 7, "repeat": 64, "t": 16.0}
MAX_ITEMS, MAX_HEAD = 64, 4096


def make_divisible(v: float, divisor: int = 8) -> int:
    """v rounded up to a multiple of `divisor` (the template's rule for scaled channels)."""
    return max(divisor, int(math.ceil(v / divisor) * divisor))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _lines(text: str) -> list[int]:
    """1-based line of each backbone item in the YAML text (for messages)."""
    import yaml

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "backbone" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def parse_spec(spec: Any, source: str, lines: list[int] | None = None) -> dict[str, Any]:
    """The spec, checked and normalized to plain types (every argument filled in).

    Raises:
        InputError: an unknown key or module, a wrong argument count or type, zero or negative
            channels, kernel or stride: naming `source`, the backbone line and what is expected.
    """

    def where(i: int) -> str:
        return f"{source}, line {lines[i]}" if lines and i < len(lines) else f"{source}, backbone item {i + 1}"

    if not isinstance(spec, dict):
        raise InputError(f"{source}: a spec is a mapping with keys {', '.join(KEYS)}; got {type(spec).__name__}.")
    if extra := sorted(set(spec) - set(KEYS)):
        raise InputError(f"{source}: unknown key(s) {extra}; a spec has {', '.join(KEYS)}.")
    out: dict[str, Any] = {}
    for key in ("depth_multiple", "width_multiple"):
        v = spec.get(key, 1.0)
        if not _number(v) or not 0 < v <= 10:
            raise InputError(f"{source}: {key} {brief(v)} must be a number in (0, 10].")
        out[key] = float(v)
    head = spec.get("head", 1024)
    if not _int(head) or not 1 <= head <= MAX_HEAD:
        raise InputError(
            f"{source}: head {brief(head)} must be the 1x1 conv's channel count, an integer in 1..{MAX_HEAD}."
        )
    out["head"] = head
    backbone = spec.get("backbone")
    if not isinstance(backbone, list) or not 1 <= len(backbone) <= MAX_ITEMS:
        raise InputError(f"{source}: backbone must be a list of 1 to {MAX_ITEMS} [repeat, Module, args].")
    rows = []
    for i, item in enumerate(backbone):
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[2], list)):
            raise InputError(f"{where(i)}: {brief(item)} is not [repeat, Module, [args]].")
        repeat, name, args = item
        if not isinstance(name, str) or name not in MODULES:
            raise InputError(f"{where(i)}: unknown module {brief(name)}; one of {', '.join(MODULES)}.")
        if not _int(repeat) or not 1 <= repeat <= LIMITS["repeat"]:
            raise InputError(f"{where(i)}: repeat {brief(repeat)} must be an integer in 1..{LIMITS['repeat']}.")
        names, required, defaults = MODULES[name]
        if not required <= len(args) <= len(names):
            count = str(required) if required == len(names) else f"{required} to {len(names)}"
            raise InputError(
                f"{where(i)}: {name} takes {count} argument(s) [{', '.join(names)}], got {len(args)}: {brief(args)}."
            )
        full = list(args) + list(defaults[len(args) - required :])
        for arg, v in zip(names, full, strict=True):
            if arg == "act":
                v = "Identity" if v is None else v
                if not isinstance(v, str) or v not in ACTIVATIONS:
                    raise InputError(f"{where(i)}: {name} act {brief(v)} is not one of {', '.join(ACTIVATIONS)}.")
                full[names.index(arg)] = v
            elif arg == "padding":
                if v is not None and (not _int(v) or not 0 <= v <= LIMITS["padding"]):
                    raise InputError(
                        f"{where(i)}: {name} padding {brief(v)} must be null (same) "
                        f"or an integer in 0..{LIMITS['padding']}."
                    )
            elif arg == "t":
                if not _number(v) or not 1 <= v <= LIMITS["t"]:  # also refuses .inf and .nan
                    raise InputError(
                        f"{where(i)}: {name} expansion t {brief(v)} must be a number in 1..{LIMITS['t']:g}."
                    )
                full[names.index(arg)] = float(v)
            elif arg in ("SE", "HS"):
                if v not in (0, 1) or isinstance(v, float):
                    raise InputError(f"{where(i)}: {name} {arg} {brief(v)} must be 0 or 1.")
                full[names.index(arg)] = int(v)
            elif not _int(v) or not 1 <= v <= LIMITS[arg]:
                raise InputError(f"{where(i)}: {name} {arg} {brief(v)} must be an integer in 1..{LIMITS[arg]} (zero "
                                 "channels, kernel or stride is not a layer).")  # fmt: skip
        a = dict(zip(names, full, strict=True))
        if "kernel" in a and a["kernel"] % 2 == 0 and a.get("padding") is None:
            raise InputError(f"{where(i)}: {name} kernel {a['kernel']} must be odd for \"same\" padding (null); "
                             "give an explicit padding for an even kernel.")  # fmt: skip
        if name == "InvertedResidualv3" and a["kernel"] % 2 == 0:
            raise InputError(f"{where(i)}: InvertedResidualv3 kernel {a['kernel']} must be odd (3, 5, 7).")
        rows.append([repeat, name, full])
    out["backbone"] = rows
    return out


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read and check a spec file (parse_spec), errors naming the file's line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f'nas:{path}: no such spec file; write one (docs/search.md, "Networks from a spec").')
    text = path.read_text()
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise InputError(f"nas:{path}: {line}not YAML ({getattr(e, 'problem', None) or e}).") from None
    return parse_spec(spec, f"nas:{path}", _lines(text))


class Conv(nn.Sequential):
    def __init__(self, c_in: int, out: int, kernel: int, stride: int, padding: int | None, groups: int, act: str):
        pad = kernel // 2 if padding is None else padding
        super().__init__(
            nn.Conv2d(c_in, out, kernel, stride, pad, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            ACTIVATIONS[act](),
        )


class SqueezeExcite(nn.Module):
    """MobileNetV3's squeeze-and-excite: pooled, reduced to a quarter (multiple of 8), hard-sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = make_divisible(channels // 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Conv2d(channels, mid, 1), nn.ReLU(), nn.Conv2d(mid, channels, 1), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.pool(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 (ReLU6, no SE) and MobileNetV3 (ReLU or hard-swish, optional SE) blocks:
    1x1 expansion (skipped when the hidden width equals the input), k x k depthwise, linear 1x1
    projection; a residual when the stride is 1 and the width unchanged."""

    def __init__(self, c_in: int, out: int, hidden: int, kernel: int, stride: int, se: bool, act: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers.append(Conv(c_in, hidden, 1, 1, None, 1, act))
        layers.append(Conv(hidden, hidden, kernel, stride, None, hidden, act))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += [nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def _layer(i: int, name: str, args: list[Any], c_in: int, width: float, stride_here: bool) -> tuple[nn.Module, int]:
    """One copy of backbone item `i` on `c_in` channels (strided when `stride_here`); its output
    channels."""
    a = dict(zip(MODULES[name][0], args, strict=True))
    stride = a.get("stride", 1) if stride_here else 1
    if name == "Pass":
        return nn.Identity(), c_in
    out = make_divisible(a["out"] * width)
    if name == "Conv":
        if c_in % a["groups"] or out % a["groups"]:
            raise InputError(f"backbone item {i + 1}: Conv groups {a['groups']} must divide its {c_in} input and "
                             f"{out} output channels.")  # fmt: skip
        return Conv(c_in, out, a["kernel"], stride, a["padding"], a["groups"], a["act"]), out
    if name == "DWConv":
        return Conv(c_in, out, a["kernel"], stride, a["padding"], math.gcd(c_in, out), a["act"]), out
    if name == "InvertedResidualv2":
        return InvertedResidual(c_in, out, int(round(c_in * a["t"])), 3, stride, False, "ReLU6"), out
    hidden = make_divisible(c_in * a["t"])
    act = "Hardswish" if a["HS"] else "ReLU"
    return InvertedResidual(c_in, out, hidden, a["kernel"], stride, bool(a["SE"]), act), out


def build(spec: dict[str, Any], num_classes: int) -> nn.Module:
    """The network a parsed spec describes, ending in the 1x1 `head` conv (hard-swish), global
    average pooling and the bias-free 1x1 conv classifier (tinycls.heads.ConvHead). A repeated
    Conv or DWConv strides in its last copy, an inverted residual in its first (the template's
    rule)."""
    layers, c = [], 3
    for i, (repeat, name, args) in enumerate(spec["backbone"]):
        n = max(round(repeat * spec["depth_multiple"]), 1) if repeat > 1 else repeat
        strided = n - 1 if name in ("Conv", "DWConv") else 0
        block = []
        for k in range(n):
            layer, c = _layer(i, name, args, c, spec["width_multiple"], k == strided)
            block.append(layer)
        layers.append(nn.Sequential(*block))
    head = make_divisible(spec["head"] * spec["width_multiple"])
    features = nn.Sequential(*layers, Conv(c, head, 1, 1, None, 1, "Hardswish"), nn.AdaptiveAvgPool2d(1))
    model = nn.Sequential()
    model.add_module("features", features)
    model.add_module("output", ConvHead(head, num_classes))
    return model


def check_input(spec: dict[str, Any], input_size: int, source: str) -> None:
    """Refuse a spec that does not run at `input_size`: a stride on a map that is already 1x1, a
    kernel larger than its padded map, channels that do not fit (checked by running each backbone
    item on a zero image, no gradient).

    Raises:
        InputError: naming the backbone item, its module and the map size it gets.
    """
    try:
        features = build(spec, 2).eval().features
    except InputError as e:
        raise InputError(f"{source}, {e}") from None
    x = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad():
        for i, (_, name, args) in enumerate(spec["backbone"]):
            stride = dict(zip(MODULES[name][0], args, strict=True)).get("stride", 1)
            side = x.shape[-1]
            if stride > 1 and side == 1:
                raise InputError(
                    f"{source}, backbone item {i + 1} ({name}, stride {stride}): the map is already 1x1 at "
                    f"{input_size} px input; remove a stride before it, or use a larger input_size."
                )
            try:
                x = features[i](x)
            except RuntimeError as e:
                raise InputError(
                    f"{source}, backbone item {i + 1} ({name}): does not run on its {side}x{side} map at "
                    f"{input_size} px input ({str(e).splitlines()[0][:160]}); use a smaller kernel or stride, "
                    "or a larger input_size."
                ) from None
