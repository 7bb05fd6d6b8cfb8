"""`python -m tinycls.cli`: the `tinycls` command."""

from tinycls.cli import app

app()
