"""`tinycls`: the library's tools beside the pipeline (MACs, predictions, the score, data, search,
reviewing runs). `app` is the entry point; each module registers its commands on it."""

from tinycls.cli import models, review, search  # noqa: F401  (registers the commands)
from tinycls.cli.app import app

__all__ = ["app"]
