"""Pretraining data for the student (CIFAR-10, CIFAR-100, scikit-learn's digits) and the weight
transfer from a pretrained checkpoint into a model with a fresh classifier head.

CIFAR comes through torchvision's own loaders (python-pickle batches, md5-checked): downloaded
when allowed and online, or read from a local copy (the extracted `cifar-10-batches-py` /
`cifar-100-python` folder, or the untouched .tar.gz, under the given root).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinycls.checkpoint import transfer_weights
from tinycls.config import one_of
from tinycls.errors import InputError
from tinycls.models import classifier_layer

# source -> datasets trained on, in order; the team's best was CIFAR-10 then CIFAR-100.
PHASES: dict[str, tuple[str, ...]] = {
    "none": (),
    "cifar10": ("cifar10",),
    "cifar100": ("cifar100",),
    "cifar10_to_100": ("cifar10", "cifar100"),
    "cifar100_to_10": ("cifar100", "cifar10"),
    "digits": ("digits",),
}
SOURCES = tuple(PHASES)
DATA_KEYS = ("source", "cifar_root", "download", "max_per_class", "input_size")


@dataclass(frozen=True)
class PretrainConfig:
    """The data keys of params.yaml [pretrain] (DATA_KEYS; the rest is the loop's TrainConfig)."""

    source: str  # one of SOURCES
    cifar_root: str  # a folder outside data/ holding (or receiving) the CIFAR copies
    download: bool  # fetch CIFAR when it is not under cifar_root (needs network)
    max_per_class: int  # cap on CIFAR images per class, train and val (0 = all)
    input_size: int  # px

    def __post_init__(self) -> None:
        one_of("source", self.source, SOURCES)
        if self.max_per_class < 0:
            raise InputError(f"max_per_class: {self.max_per_class} must be >= 0 (0 = all).")
        if self.input_size < 8:
            raise InputError(f"input_size: {self.input_size} must be >= 8.")
        if Path(self.cifar_root).expanduser().resolve().is_relative_to(Path("data").resolve()):
            raise InputError(
                f"cifar_root: {self.cifar_root!r} is inside data/, which holds your dataset only; "
                "use a folder outside it."
            )


@dataclass(frozen=True)
class PretrainData:
    name: str
    classes: list[str]
    train: tuple[np.ndarray, np.ndarray]  # uint8 (N, S, S, 3), int64 (N,)
    val: tuple[np.ndarray, np.ndarray]


def _cap(images: np.ndarray, labels: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` images of each class, in file order (0 = all)."""
    if per_class <= 0:
        return images, labels
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    keep.sort()
    return images[keep], labels[keep]


def load_cifar(name: str, root: Path, download: bool, max_per_class: int = 0) -> PretrainData:
    """CIFAR-10 or CIFAR-100 (fine labels) as uint8 arrays: train = the 50,000 training images,
    val = the 10,000 test images, each capped at `max_per_class` per class (0 = all).

    Raises:
        RuntimeError: no valid copy under `root` and it could not be downloaded (or download
            is off); the message says where a copy must go.
    """
    import torchvision.datasets as tvd

    one_of("dataset", name, ("cifar10", "cifar100"))
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    root = Path(root).expanduser()
    where = root / cls.base_folder
    fix = (
        f"Fix: put a copy of {name} there ({cls.filename} from {cls.url}, or its extracted "
        f"{cls.base_folder}/ folder), set params.yaml [pretrain].cifar_root to a folder that holds "
        "one, or use pretrain.source digits or none."
    )
    # torchvision extracts a local .tar.gz (md5-checked, no network) only inside download().
    fetch = download or (root / cls.filename).is_file()
    try:
        sets = [cls(str(root), train=train, download=fetch) for train in (True, False)]
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        state = "is corrupted or incomplete (md5 mismatch)" if where.exists() else "does not exist"
        hint = "" if download else " Download is off (pretrain.download: false)."
        raise RuntimeError(f"{name}: {where} {state}.{hint} {fix}") from e
    except OSError as e:  # URLError and friends: offline
        raise RuntimeError(
            f"{name}: no copy under {root} and the download failed ({type(e).__name__}: {e}). {fix}"
        ) from e
    train, val = (
        _cap(np.ascontiguousarray(s.data, dtype=np.uint8), np.asarray(s.targets, dtype=np.int64), max_per_class)
        for s in sets
    )
    return PretrainData(name, list(sets[0].classes), train, val)


def load_digits(seed: int = 0, val_fraction: float = 0.2) -> PretrainData:
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, 0-16 grey levels) as uint8
    RGB, split per class into train and val with `seed`. Offline: it ships with scikit-learn."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    images = np.repeat(np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None], 3, axis=3)
    labels = d.target.astype(np.int64)
    tr, va = train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=labels)
    tr.sort()
    va.sort()
    return PretrainData("digits", [str(i) for i in range(10)], (images[tr], labels[tr]), (images[va], labels[va]))


def load_phase(name: str, root: Path, download: bool, max_per_class: int, seed: int) -> PretrainData:
    if name == "digits":
        return load_digits(seed)
    return load_cifar(name, root, download, max_per_class)


def head_names(model: nn.Module) -> set[str]:
    """State-dict names of the classifier layer: the last Conv2d or Linear (our ConvHead, or the
    last layer of a pytorchcv classifier block), which depends on the class count."""
    last = classifier_layer(model)[0]
    return {k for k in model.state_dict() if k.startswith(last + ".")}


@dataclass(frozen=True)
class Transfer:
    transferred: int  # tensors copied (name and shape match)
    skipped: int  # tensors of the checkpoint not copied: the classifier head, or no match
    head: list[str]  # the re-initialized classifier tensors


def transfer_pretrained(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str, allow_none: bool = False
) -> Transfer:
    """Copy every tensor of `state_dict` whose name and shape match one of `model`'s, except the
    classifier head, which keeps its fresh initialization.

    Raises:
        ValueError: nothing matched (e.g. another architecture) and `allow_none` is False; the
            message names `source` and the fix.
    """
    head = head_names(model)
    own = model.state_dict()
    # Weights, not bookkeeping: BatchNorm's 0-d num_batches_tracked matches any net with the
    # same module names, so it alone must not pass for a transfer.
    weights = [
        k
        for k, v in state_dict.items()
        if k not in head and k in own and own[k].shape == v.shape and v.is_floating_point() and v.ndim > 0
    ]
    if not weights:
        if not allow_none:
            raise InputError(
                f"{source}: none of its {len(state_dict)} tensors fit this model (another architecture?); "
                "pretrain the same architecture, or set params.yaml [student].allow_unmatched_init: true "
                "to train from the model's own initialization anyway."
            )
        return Transfer(0, len(state_dict), sorted(head))  # nothing loaded, not even counters
    moved, _ = transfer_weights(model, {k: v for k, v in state_dict.items() if k not in head})
    return Transfer(moved, len(state_dict) - moved, sorted(head))
