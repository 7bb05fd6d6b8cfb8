"""How a stage runs: bad input ends it with the message alone and exit status 2, SIGTERM is
Ctrl-C, a training stage's resume folder lives until it has trained everything; and writing its
metrics and plot files."""

import csv
import json
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tinycls.errors import InputError

RESUME = Path("resume")  # <stage>/<checkpoint name>: training states an interrupted stage resumes from


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


@contextmanager
def resumable(stage: str) -> Iterator[Path]:
    """A folder for the stage's resume states (git-ignored, outside its DVC outputs, which
    `dvc repro` deletes before a rerun); removed once the stage has trained everything, kept
    when it fails or is interrupted, so that the rerun continues after the last finished epoch."""
    folder = RESUME / stage
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
    if RESUME.is_dir() and not any(RESUME.iterdir()):
        RESUME.rmdir()


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
