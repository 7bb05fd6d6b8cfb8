"""Presets: a partial params.yaml (section -> key -> value) applied to params.yaml in one step,
keeping its comments and order (ruamel.yaml round trip, the library DVC rewrites it with), so
that a setting measured by a benchmark is exactly the setting a user applies.

A name without a slash or suffix is a file in presets/ (`photos` -> presets/photos.yaml)."""

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tinycls.errors import InputError

PRESETS = Path("presets")


def preset_path(name: str) -> Path:
    """The file a preset name means: presets/<name>.yaml, or `name` itself when it is a path."""
    path = Path(name) if ("/" in name or name.endswith((".yaml", ".yml"))) else PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS.glob("*.yaml")) if PRESETS.is_dir() else []
        raise InputError(
            f"preset {name!r}: {path} does not exist. Known presets: {', '.join(known) or 'none'} "
            "(or give the path of a YAML file of params sections)."
        )
    return path


def _yaml() -> YAML:
    y = YAML()  # round trip: comments, key order and quoting survive
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)  # params.yaml's list style
    return y


def changes_of(path: Path) -> dict[str, Any]:
    """{"section.key": value} of a preset file (one level of sections, as params.yaml has;
    a nested mapping such as assistant.kd is set key by key)."""
    try:
        data = YAML(typ="safe").load(path.read_text())
    except Exception as e:
        raise InputError(f"{path}: not readable YAML ({type(e).__name__}: {e}).") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"{path}: expected params sections (section: {{key: value}}), as in params.yaml.")

    def flat(prefix: str, node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flat(f"{prefix}{k}.", v) if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    return flat("", data)


def apply(changes: dict[str, Any], params: Path = Path("params.yaml"), what: str = "preset") -> list[str]:
    """Set each "section.key[.key]" of `changes` in `params`; the lines describing what changed.

    Raises:
        InputError: a key params.yaml does not have (a typo would otherwise be ignored).
    """
    y = _yaml()
    doc = y.load(params.read_text())
    lines, missing = [], []
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = doc
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict) or key not in node:
            missing.append(dotted)
            continue
        if node[key] != value:
            lines.append(f"{dotted}: {node[key]!r} -> {value!r}")
            node[key] = value
    if missing:
        raise InputError(
            f"{what}: {', '.join(missing)} not in {params}; a preset only sets keys params.yaml has "
            "(check the spelling, or the section the key belongs to)."
        )
    with params.open("w") as f:
        y.dump(doc, f)
    return lines
