"""What a model file (a checkpoint or its ONNX export) records about its input, checked by one
set of rules, and the size limit of the network it may describe; without PyTorch, so that an
ONNX file is refused before PyTorch is even imported."""

from pathlib import Path
from typing import Any

from tinycls.errors import InputError, brief

MAX_INPUT_SIZE = 4096
# numbers (weights and buffers) a recorded network may hold: 800 MB as float32, 30x the largest
# network tinycls trains by default (the teacher, 6M); a larger one is refused before it is built
MAX_NUMBERS = 200_000_000


def foreign(path: Path, what: str, redo: str = "Re-create it with `dvc repro`") -> InputError:
    """The error for a model file that breaks a rule: `what` is wrong, and the fix `redo`."""
    return InputError(f"{path}: {what}; a model file from elsewhere is loaded as data only. {redo}.")


def refusal(path: Path, key: str, value: Any, want: str) -> InputError:
    """The error for a model file's field that is not what tinycls writes."""
    return foreign(path, f"{key} {brief(value)} is not what tinycls writes ({want})")


def check_preprocessing(path: Path, meta: dict[str, Any]) -> None:
    """The fields a checkpoint and its ONNX export share: classes, sizes, mean and std.

    Raises:
        InputError: the first bad field, named with its value and the fix.
    """
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise refusal(path, "classes", classes, "a non-empty list of class names")
    if len(set(classes)) != len(classes):
        raise refusal(path, "classes", classes, "class names, each once")
    for key in ("input_size", "cache_size"):
        size = meta.get(key, 8)
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_INPUT_SIZE:
            raise refusal(path, key, size, f"an integer from 8 to {MAX_INPUT_SIZE} px")
    for key in ("mean", "std"):
        v = meta.get(key)
        numbers = isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        if not numbers or len(v) != 3 or not all(-1e30 < x < 1e30 for x in v):  # no nan, inf or 400-digit int
            raise refusal(path, key, v, "three finite numbers, one per RGB channel")
        if key == "std" and min(v) <= 0:
            raise refusal(path, key, v, "three numbers > 0")
