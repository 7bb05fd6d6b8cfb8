"""How a stage runs: bad input ends it with the message alone and exit status 2, SIGTERM is
Ctrl-C, a training stage's resume folder lives until it has trained everything; and writing its
metrics and plot files."""

import csv
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tinycls.errors import InputError
from tinycls.ranks import primary

RESUME = Path("resume")  # <stage>/<checkpoint name>: training states an interrupted stage resumes from


def run(main: Callable[[], None]) -> None:
    """Run a stage's main. Bad input (InputError) ends it with the message alone on stderr and exit
    status 2: `dvc repro` shows what to fix, not a traceback (a bug keeps its traceback). SIGTERM is
    Ctrl-C: the training stages save what they have and exit 130, and their rerun resumes."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill`, a scheduler's stop: as Ctrl-C
    sys.stdout = sys.stdout if primary() else open(os.devnull, "w")  # noqa: SIM115 (torchrun's other ranks: rank 0 talks)
    try:
        main()
    except (InputError, KeyboardInterrupt) as e:
        bad = isinstance(e, InputError)
        if primary():  # torchrun's other ranks would say the same
            print(f"Error: {e}" if bad else "Interrupted. `dvc repro` continues training after the last finished "
                  "epoch.", file=sys.stderr)  # fmt: skip
        sys.exit(2 if bad else 130)


@contextmanager
def resumable(stage: str) -> Iterator[Path]:
    """A folder for the stage's resume states (git-ignored, outside its DVC outputs, which
    `dvc repro` deletes before a rerun); removed once the stage has trained everything, kept
    when it fails or is interrupted, so that the rerun continues after the last finished epoch."""
    yield RESUME / stage
    if primary():  # torchrun's other ranks write (and remove) nothing, here or in write_*
        shutil.rmtree(RESUME / stage, ignore_errors=True)
        if RESUME.is_dir() and not any(RESUME.iterdir()):
            RESUME.rmdir()


def write_json(path: Path, obj: Any) -> None:
    if primary():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2) + "\n")


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    if primary():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
