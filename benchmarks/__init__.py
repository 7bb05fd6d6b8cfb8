"""Benchmarks: `python -m benchmarks.<name>`; their numbers go on docs/results/<name>.md."""
