"""The `tinycls` command itself: its Typer app, which prints a user's error without a traceback, and
the helpers its commands share."""

import sys
from pathlib import Path

import typer

from tinycls.errors import InputError


class _Typer(typer.Typer):
    """Typer whose entry point prints an InputError (bad data, params or files) as a message,
    exit status 2 like typer's own usage errors; other exceptions keep their traceback (bugs)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except InputError as e:
            typer.echo(f"Error: {e}", err=True)
            sys.exit(2)


app = _Typer(
    help="Make image classifiers tiny. The pipeline runs with `dvc repro`; these "
    "commands measure, predict and score on their own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _ints(text: str, example: str, option: str | None = None) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: expected integers separated by commas, e.g. {example}", param_hint=option
        ) from None


def _dvc() -> str:
    """DVC of this environment (beside this Python when the venv is not on PATH)."""
    import shutil
    import sys

    return shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
