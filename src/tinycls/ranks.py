"""Which process this is when torchrun started several (RANK, WORLD_SIZE), without importing
PyTorch: stages that write files ask `primary()` (rank 0 writes; the others only train)."""

import os


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def primary() -> bool:
    """Whether this process writes: rank 0, or the one process of a plain run."""
    return rank() == 0
