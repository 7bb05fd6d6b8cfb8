"""Shared by the stage scripts: the files stages hand to each other, reading a params.yaml
section, writing metrics and plot files."""

import csv
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tinycls.errors import InputError, MissingInput

PARAMS = Path("params.yaml")
DATA = Path("data")  # data/<dataset>/: the user's images, never written
# The files stages hand to each other (the edges of dvc.yaml); each stage keeps its own
# metrics, plots and live/ paths.
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


def run(main: Callable[[], None]) -> None:
    """Run a stage's main. Bad params, data or files (InputError) end it with the message alone
    on stderr and exit status 2, so `dvc repro` shows what to fix, not a traceback; any other
    exception is a bug and keeps its traceback. SIGTERM is handled as Ctrl-C: the training
    stages save what they have and exit 130, and their rerun resumes."""
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`, a scheduler's stop: as Ctrl-C
    try:
        main()
    except InputError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("Interrupted. `dvc repro` continues training after the last finished epoch.", file=sys.stderr)
        sys.exit(130)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def section(name: str) -> dict[str, Any]:
    """The `name` section of params.yaml.

    Raises:
        FileNotFoundError: params.yaml is not in the working directory.
        InputError: the section is missing or not a mapping.
    """
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
    """One key of a section, for a stage that declares just that key (`name.key`) in dvc.yaml.

    Raises:
        ValueError: the section or key is missing.
    """
    sec = section(name)
    if not isinstance(sec, dict) or key not in sec:
        raise InputError(f"params.yaml: no [{name}].{key}; see docs/parameters.md.")
    return sec[key]


def source(name: str) -> str:
    return f"params.yaml [{name}]"


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
