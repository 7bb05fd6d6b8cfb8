"""Every test is cheap: one CPU thread, tiny images made here as real PNG files, no network."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

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


def class_arrays(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images (n, size, size, 3) of 3 classes, the class being the bright channel, and
    their int64 labels: data a tiny net learns in one epoch."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = np.clip(rng.normal(60, 30, (n, size, size, 3)), 0, 255)
    x[np.arange(n), :, :, y] += 150
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_imagefolder(tmp_path / "data" / "tiny")


def _pickle(path: Path, obj: dict) -> str:
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return hashlib.md5(path.read_bytes()).hexdigest()


def _cifar_batch(rng: np.random.Generator, labels: list[int], key: str) -> dict:
    # The real layout: uint8 rows of 3072 = 1024 red, 1024 green, 1024 blue values (32x32, row-major).
    data = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
    return {"batch_label": b"generated", key: labels, "data": data, "filenames": [f"{i}.png" for i in labels]}


def make_cifar(root: Path, monkeypatch: pytest.MonkeyPatch, per_class: int = 2) -> Path:
    """CIFAR-10 and CIFAR-100 in torchvision's python-pickle format under `root`, tiny, with
    torchvision's md5 table pointed at the generated files (their integrity check still runs)."""
    import torchvision.datasets as tvd

    rng = np.random.default_rng(0)
    c10 = root / tvd.CIFAR10.base_folder
    train_list = []
    for i in range(1, 6):  # the classes spread over the five training batches
        labels = [c for c in range(10) for _ in range(per_class) if c % 5 == i - 1]
        train_list.append([f"data_batch_{i}", _pickle(c10 / f"data_batch_{i}", _cifar_batch(rng, labels, "labels"))])
    test = _pickle(c10 / "test_batch", _cifar_batch(rng, [c for c in range(10) for _ in range(per_class)], "labels"))
    meta = _pickle(c10 / "batches.meta", {"label_names": [f"c10_{i}" for i in range(10)]})
    monkeypatch.setattr(tvd.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", test]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": meta})

    c100 = root / tvd.CIFAR100.base_folder
    labels = [c for c in range(100) for _ in range(per_class)]
    batch = _cifar_batch(rng, labels, "fine_labels") | {"coarse_labels": [c // 5 for c in labels]}
    train = _pickle(c100 / "train", batch)
    test = _pickle(c100 / "test", _cifar_batch(rng, list(range(100)), "fine_labels"))
    meta = _pickle(c100 / "meta", {"fine_label_names": [f"c100_{i}" for i in range(100)]})
    monkeypatch.setattr(tvd.CIFAR100, "train_list", [["train", train]])
    monkeypatch.setattr(tvd.CIFAR100, "test_list", [["test", test]])
    monkeypatch.setattr(tvd.CIFAR100, "meta", {**tvd.CIFAR100.meta, "md5": meta})
    return root


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A tiny prepared dataset and params.yaml in the working folder: where a stage script runs."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"].update(dataset="tiny", image_size=16, max_per_class=0, workers=1)
    for name in ("teacher", "assistant", "student"):
        params[name].update(arch="pytorchcv:shufflenet_g3_wd4", epochs=1, batch_size=8, input_size=16)
    params["teacher"].update(pretrained=False, weights="", max_per_class=0)
    params["pretrain"].update(epochs=1, batch_size=32, input_size=16, download=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_imagefolder(tmp_path / "data" / "tiny")
    monkeypatch.chdir(tmp_path)
    from stages import prepare

    prepare.main()
    return tmp_path
