"""Typed, validated config sections built from plain dicts (e.g. a params.yaml section).

The library never reads params.yaml; a stage passes a section and names where it came from,
so an error reads `params.yaml [student].optimizer: 'adam' is not one of adamw, sgd.`
"""

import dataclasses
import typing
from typing import Any, TypeVar

from tinycls.errors import InputError

T = TypeVar("T")


def one_of(field: str, value: Any, valid: typing.Iterable[str]) -> None:
    """Raise ValueError unless value is in valid (message lists the valid names)."""
    valid = list(valid)
    if value not in valid:
        raise InputError(f"{field}: {value!r} is not one of {', '.join(valid)}.")


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
    values = {}
    for name, value in section.items():
        want = hints[name]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        base = typing.get_origin(want) or want
        if base in (int, float, str, bool) and (
            not isinstance(value, base) or (base is int and isinstance(value, bool))
        ):
            hint = " (write floats with a dot, e.g. 5.0e-4)" if base is float and isinstance(value, str) else ""
            raise InputError(f"{source}.{name}: {value!r} is not a {base.__name__}{hint}.")
        values[name] = value
    try:
        return cls(**values)
    except InputError as e:
        raise InputError(f"{source}.{e}") from None
