"""Readers of the cache `prepare` writes (the stages after it read the data through this module
alone, so a change to an image decoder reruns `prepare` and nothing that reads its cache).

Cache folder: `{train,val}_images.npy` (N, S, S, 3) uint8 with `{train,val}_labels.npy` (N,)
int64, `test_images.npy` (test images in content-hash order), `classes.json` and `index.csv`.
The held-out file beside it holds the test file names and labels, for the final score only.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinycls.errors import InputError
from tinycls.rows import Rows


@dataclass(frozen=True)
class Split:
    """What one fit learns from: the class names, the training set (images, int64 labels (N,) or
    class probabilities (N, K)) and the set the best epoch is selected by (images, labels)."""

    classes: list[str]
    train: tuple[np.ndarray | Rows, np.ndarray]
    val: tuple[np.ndarray | Rows, np.ndarray]


def load_split(cache: Path, split: str) -> tuple[Rows, np.ndarray | None]:
    """(images (N, S, S, 3) uint8, read from disk a batch at a time (tinycls.rows.Rows), labels
    (N,) int64 in memory, or None for test) from a prepared cache."""
    images = Rows([cache / f"{split}_images.npy"])
    labels_path = cache / f"{split}_labels.npy"
    labels = np.load(labels_path) if labels_path.exists() else None
    if labels is not None and (labels.ndim != 1 or len(labels) != len(images)):
        raise InputError(
            f"{labels_path}: {labels.shape} labels for {len(images)} images in {split}_images.npy; the cache is "
            "damaged or mixed from two runs. Fix: `dvc checkout artifacts/prepare`, or `dvc repro -f prepare`."
        )
    return images, labels


def load_classes(cache: Path) -> list[str]:
    return json.loads((cache / "classes.json").read_text())


def load_held_out(path: Path) -> tuple[list[str], np.ndarray | None]:
    """(test file names, test labels or None) in test_images.npy order. For the final score only."""
    held = json.loads(path.read_text())
    return held["files"], None if held["labels"] is None else np.asarray(held["labels"], dtype=np.int64)


def cap_per_class(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Sorted indices keeping at most `cap` seeded-random items of each class (0 = no cap)."""
    if cap <= 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:cap] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))
