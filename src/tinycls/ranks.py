"""Which process this is when torchrun started several (RANK, WORLD_SIZE), and the cores it may
use, without importing PyTorch: stages that write files ask `primary()` (rank 0 writes; the
others only train)."""

import os


def _torchrun() -> bool:
    """Started by torchrun (which names its run), not merely given a RANK by some scheduler."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", 0)) if _torchrun() else 0


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", 1)) if _torchrun() else 1


def cpu_threads() -> int:
    """The cores this process may use (its CPU affinity; what ONNX Runtime's default thread count follows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def primary() -> bool:
    """Whether this process writes: rank 0, or the one process of a plain run."""
    return rank() == 0
