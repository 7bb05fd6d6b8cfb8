"""Typed, validated config sections built from plain dicts (e.g. a params.yaml section).

The library never reads params.yaml; a stage passes a section and names where it came from,
so an error reads `params.yaml [student].optimizer: 'adam' is not one of adamw, sgd.`
"""

import dataclasses
import typing
from typing import Any, TypeVar

from tinycls.errors import InputError, brief

T = TypeVar("T")

# One table of bounds by key name, applied by from_section to every section (params.yaml's and
# the CLI's): what a key of that name must hold wherever it appears, all of a section's
# violations reported at once. A section's own rules (its __post_init__) come after it.
# (low, high), inclusive; None = unbounded.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "seed": (0, 2**32 - 1),  # NumPy's and PyTorch's seed range
    "batch_size": (1, None),
    "processes": (1, 64),
    "eval_batch_size": (1, None),
    "qat_batch_size": (1, None),
    "qat_epochs": (0, None),
    "lr": (0, None),
    "qat_lr": (0, None),
    "weight_decay": (0, None),
    "momentum": (0, 1),
    "label_smoothing": (0, 1),
    "translate": (0, 0.5),  # a shift of more than half the side leaves no image
    "input_size": (8, 4096),  # a model's side in px; above it one image alone is ~200 MB of floats
    "image_size": (8, 4096),
    "workers": (1, 256),
    "baseline_macs": (1, None),
    "baseline_f1": (0, 1),
    "f1_floor": (0, 1),
    "trials": (1, None),
    "heartbeat_s": (1, None),
    "bn_images": (0, None),
    "calibration_images": (1, None),
    "latency_runs": (1, None),
    "latency_warmup": (0, None),
    "parity_tolerance": (0, None),
    "val_per_class": (0, None),
    "train_per_class": (1, None),
    "startup_trials": (0, None),
    "max_per_class": (0, None),  # 0 = every image
}


def out_of_bounds(values: dict[str, Any]) -> list[str]:
    """`name: value must be ...` for every value outside BOUNDS (numbers only; bools are not)."""
    found = []
    for name, v in values.items():
        lo, hi = BOUNDS.get(name, (None, None))
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            want = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"
            found.append(f"{name}: {v} must be {want}.")
    return found


def one_of(field: str, value: Any, valid: typing.Iterable[str]) -> None:
    """Raise ValueError unless value is in valid (message lists the valid names)."""
    valid = list(valid)
    if value not in valid:
        raise InputError(f"{field}: {brief(value)} is not one of {', '.join(valid)}.")


def from_section(cls: type[T], section: dict[str, Any] | None, source: str) -> T:
    """Build dataclass `cls` from `section`, checking names and types.

    Raises:
        InputError: unknown or missing keys, wrong types, or a value that `cls` rejects; the
            message starts with `source`.
    """
    if not isinstance(section, dict):
        raise InputError(f"{source}: missing or not a mapping; see params.yaml in the repository.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise InputError(f"{source}: unknown key(s) {unknown}; valid keys: {', '.join(fields)}.")
    missing = [
        n
        for n, f in fields.items()
        if n not in section and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise InputError(f"{source}: missing key(s) {missing}.")
    values, bad, wrong_type = {}, [], set()
    for name, value in section.items():
        want = hints[name]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        base = typing.get_origin(want) or want
        if base in (int, float, str, bool, list, dict) and (
            not isinstance(value, base) or (base is int and isinstance(value, bool))
        ):
            hint = " (write floats with a dot, e.g. 5.0e-4)" if base is float and isinstance(value, str) else ""
            bad.append(f"{name}: {brief(value)} is not a {base.__name__}{hint}.")
            wrong_type.add(name)
        values[name] = value
    if bad := bad + out_of_bounds({k: v for k, v in values.items() if k not in wrong_type}):
        raise InputError(f"\n  - {source}.".join([f"{source}.{bad[0]}", *bad[1:]]))  # every one at once
    try:
        return cls(**values)
    except InputError as e:
        raise InputError(f"{source}.{e}") from None


def from_sections(parts: list[tuple[Any, ...]], source: str) -> list[Any]:
    """from_section for several configs, each (cls, section) or (cls, section, its own source):
    every problem of all of them at once."""
    built, found = [], []
    for cls, section, *own in parts:
        try:
            built.append(from_section(cls, section, own[0] if own else source))
        except InputError as e:
            found.append(str(e))
    if found:
        raise InputError("\n  - ".join(found))
    return built
