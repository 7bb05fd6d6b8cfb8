"""Every test is cheap: one CPU thread, tiny images made here as real PNG files, no network."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)
CLASSES = ("ant", "bee", "cat")


def write_image(path: Path, label: int, seed: int, size: tuple[int, int] = (20, 14)) -> Path:
    """A PNG whose mean colour depends on the label, so a model can learn it."""
    rng = np.random.default_rng(seed)
    base = np.zeros(3)
    base[label % 3] = 200
    pixels = np.clip(base + rng.normal(0, 30, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_imagefolder(
    root: Path, n_train: int = 8, n_test: int = 3, val: bool = False, labelled_test: bool = True
) -> Path:
    seed = 0
    for y, c in enumerate(CLASSES):
        for i in range(n_train):
            write_image(root / "train" / c / f"{i}.png", y, seed := seed + 1)
        if val:
            for i in range(3):
                write_image(root / "val" / c / f"{i}.png", y, seed := seed + 1)
        for i in range(n_test):
            name = root / "test" / (c if labelled_test else "") / f"{c}{i}.png"
            write_image(name, y, seed := seed + 1)
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """path -> sha256 (or mode for non-files): proves a folder was not modified."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_imagefolder(tmp_path / "data" / "tiny")
