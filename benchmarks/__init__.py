"""Benchmarks: `python -m benchmarks.<name>`; their numbers go in the README."""
