"""DVC stage entry points: `python -m stages.<stage>` reads params.yaml and calls tinycls.

DVC runs each stage's `python` from PATH. Without the project's environment active (e.g.
`.venv/bin/dvc repro` from a plain shell) that is the system's Python, which lacks the project's
packages: say so in one line, before any import fails deep inside a stage."""

import importlib.util
import sys

# the packages every stage imports (tinycls is installed into .venv by `make setup`)
_NEEDED = ("tinycls", "torch", "numpy", "pandas", "yaml", "dvclive")
_missing = [m for m in _NEEDED if importlib.util.find_spec(m) is None]
if _missing:
    sys.exit(
        f"Error: {sys.executable} has no {', '.join(_missing)}: the stages need the project's environment. "
        "Activate it (`. .venv/bin/activate`, after `make setup`) and run the same command again, or use `make run`."
    )
