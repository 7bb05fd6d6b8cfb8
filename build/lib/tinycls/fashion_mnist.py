"""Materialize Fashion-MNIST as an ImageFolder tree of PNG files: the quick-start dataset.

Sources, in order: Debian's `dataset-fashion-mnist` (gzip'd IDX files), a folder of IDX files
(gzip'd or not), or torchvision's downloader. Only the decoded pixels and labels are used, so the
PNG files are byte-identical whichever source supplied them, and `data.dvc` stays clean.
"""

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from tinycls.errors import InputError, MissingInput

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# Label order of the IDX files (Zalando's README); '/' cannot appear in a folder name.
CLASSES = [
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
]
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzip'd) into a uint8 array.

    Raises:
        ValueError: the file is not a uint8 IDX file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise InputError(
            f"{path}: not a uint8 IDX file (magic {data[:4].hex()}); expected the original Fashion-MNIST files."
        )
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(src: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (src / name).is_file():
            return src / name
    return None


def locate_idx_dir(src: Path | None, download_root: Path) -> Path:
    """Return a folder holding the four IDX files, downloading with torchvision if needed.

    Raises:
        FileNotFoundError: no local copy and the download failed.
    """
    candidates = [src] if src is not None else [DEBIAN_DIR]
    for c in candidates:
        if all(_find(c, img) and _find(c, lab) for img, lab, _ in SPLITS.values()):
            return c
    if src is not None:
        raise MissingInput(
            f"{src}: missing Fashion-MNIST IDX files; expected "
            f"{[s for v in SPLITS.values() for s in v[:2]]} (.gz or not)."
        )
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(download_root), train=True, download=True)
        FashionMNIST(str(download_root), train=False, download=True)
    except Exception as e:  # no network: say both ways out
        raise MissingInput(
            f"Fashion-MNIST not found in {DEBIAN_DIR} and the torchvision download failed ({e}). "
            "Fix: `sudo apt-get install dataset-fashion-mnist`, or pass --source with a folder "
            "holding the four IDX files."
        ) from e
    return download_root / "FashionMNIST" / "raw"


def materialize(out: Path, src: Path | None = None, download_root: Path = Path(".cache")) -> int:
    """Write `out/{train,test}/<class>/<index>.png`; skip when already complete.

    Args:
        out: target folder, e.g. data/fashion_mnist.
        src: folder with the IDX files; default Debian's, then torchvision's download.
        download_root: where torchvision downloads to (never under data/).

    Returns:
        Number of PNG files written (0 when the tree was already complete).
    """
    expected = sum(n for *_, n in SPLITS.values())
    if out.is_dir() and sum(1 for _ in out.glob("*/*/*.png")) == expected:
        return 0
    idx_dir = locate_idx_dir(src, download_root)
    written = 0
    for split, (img_stem, lab_stem, n) in SPLITS.items():
        images, labels = read_idx(_find(idx_dir, img_stem)), read_idx(_find(idx_dir, lab_stem))
        assert len(images) == len(labels) == n, (split, images.shape, labels.shape)
        for c in CLASSES:
            (out / split / c).mkdir(parents=True, exist_ok=True)
        for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
            path = out / split / CLASSES[lab] / f"{i:05d}.png"
            if not path.exists():
                # optimize=False and no metadata: the bytes depend only on pixels and Pillow/zlib.
                Image.fromarray(img, mode="L").save(path, format="PNG", compress_level=6)
                written += 1
    return written
