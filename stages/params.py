"""Shared by the stage scripts: the files stages hand to each other, and reading params.yaml.
How a stage runs and writes its files: stages/runner.py."""

from pathlib import Path
from typing import Any

import yaml

from tinycls.errors import InputError, MissingInput

PARAMS = Path("params.yaml")
DATA = Path("data")  # data/<dataset>/: the user's images, never written
# The files stages hand to each other (dvc.yaml's edges); each stage keeps its own metrics paths.
CACHE = Path("artifacts/prepare")  # decoded train/val/test images, labels of train/val only
HELD_OUT = Path("artifacts/held_out/test.json")  # test file names and labels: for score alone
TEACHER = Path("artifacts/teacher/model.pt")
PSEUDO = Path("artifacts/pseudo/pseudo_labels.csv")
STUDENT = Path("artifacts/student/model.pt")
COMPRESS = Path("artifacts/compress")  # model.pt: the final model (the student itself when compression is off)
EXPORT = Path("artifacts/export")  # model.onnx and model.int8.onnx of the final model
EXPORT_METRICS = Path("metrics/export.json")  # their bytes and latency, which score reports
PRETRAIN = Path("artifacts/pretrain")  # model.pt when pretrain.source is not none
ASSISTANT = Path("artifacts/assistant")  # model.pt when kd.teachers lists the assistant
# The checkpoints a kd.teachers list may name (stage outputs, so DVC tracks them); `student`
# teaches only its own compressed copy (compress.kd_teachers).
TEACHER_OUTPUTS = {"teacher": TEACHER, "assistant": ASSISTANT / "model.pt", "student": STUDENT}


def section(name: str) -> dict[str, Any]:
    """The `name` section of params.yaml; MissingInput without the file, InputError without the section."""
    if not PARAMS.is_file():
        raise MissingInput(f"{PARAMS.resolve()}: not found; run stages from the repository root.")
    params = yaml.safe_load(PARAMS.read_text()) or {}
    if name not in params:
        raise InputError(f"params.yaml: no [{name}] section; see docs/parameters.md.")
    if not isinstance(params[name], dict):
        raise InputError(
            f"params.yaml [{name}]: {params[name]!r} is not a section of `key: value` lines; see params.yaml in "
            "the repository for its keys."
        )
    return params[name]


def value(name: str, key: str) -> object:
    """One key of a section, for a stage that declares just that key (`name.key`) in dvc.yaml."""
    sec = section(name)
    if key not in sec:
        raise InputError(f"params.yaml: no [{name}].{key}; see docs/parameters.md.")
    return sec[key]


def source(name: str) -> str:
    return f"params.yaml [{name}]"
