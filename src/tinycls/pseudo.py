"""Teacher predictions on the unlabelled test split (pseudo labels), and the training sets the
student can be given: train only, all labelled data, or all data plus pseudo-labelled test.

When val is trained on, the teacher's pseudo labels on test become the validation set (the
competition team's proxy); test images are never scored here and their labels never read.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from tinycls.cache import Split, load_classes, load_split
from tinycls.config import one_of
from tinycls.device import DEVICES
from tinycls.errors import InputError
from tinycls.predict import predict_checkpoint
from tinycls.rows import Rows

LABEL_KINDS = ("hard", "soft")
# The last one trains on test images (with teacher labels): many competitions ban it.
TRAIN_ON = ("train", "train_val", "train_val_and_pseudo_labelled_test")


@dataclass(frozen=True)
class PseudoConfig:
    """params.yaml [pseudo]: how the teacher labels test, and when its labels are trusted."""

    threshold: float  # test images with teacher confidence >= this may be trained on
    labels: str  # hard (teacher's class) | soft (its probabilities)
    hflip_tta: bool  # average the teacher over the image and its mirror
    batch_size: int
    device: str
    min_teacher_f1: float = 0.0  # a teacher below this val F1 neither picks epochs nor trains (train only)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"threshold: {self.threshold} must be in [0, 1].")
        if not 0.0 <= self.min_teacher_f1 <= 1.0:
            raise InputError(f"min_teacher_f1: {self.min_teacher_f1} must be in [0, 1] (0 = always trust it).")
        one_of("labels", self.labels, LABEL_KINDS)
        one_of("device", self.device, DEVICES)


@dataclass(frozen=True)
class DataConfig:
    """What a model trained after the teacher trains on ([student] and [assistant] keys)."""

    train_on: str  # one of TRAIN_ON
    allow_unmatched_init: bool = False  # student: a pretrain checkpoint that fits nothing is an error unless true

    def __post_init__(self) -> None:
        one_of("train_on", self.train_on, TRAIN_ON)


def teacher_probs(
    model: nn.Module, meta: dict, images: np.ndarray, device: torch.device, hflip_tta: bool, batch_size: int = 512
) -> np.ndarray:
    """Softmax probabilities (N, K) float32, averaged with the mirrored images when hflip_tta."""
    p = predict_checkpoint(model, meta, images, device, batch_size).softmax(1)
    if hflip_tta:
        p = (p + predict_checkpoint(model, meta, images, device, batch_size, hflip=True).softmax(1)) / 2
    return p.numpy().astype(np.float32)


def pseudo_table(probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per test image (its index in test_images.npy): prediction, confidence, p_<class>."""
    table = pd.DataFrame(
        {
            "index": np.arange(len(probs)),
            "prediction": [classes[i] for i in probs.argmax(1)],
            "confidence": probs.max(1),
        }
    )
    return pd.concat([table, pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])], axis=1)


def read_probs(table: pd.DataFrame, classes: list[str], n_test: int) -> np.ndarray:
    """Probabilities (N, K) back from a pseudo_table.

    Raises:
        ValueError: the table is for other classes or another test split.
    """
    cols = [f"p_{c}" for c in classes]
    if missing := [c for c in cols if c not in table.columns]:
        raise InputError(f"pseudo labels lack columns {missing}: made for other classes; rerun the pseudo stage.")
    if len(table) != n_test or table["index"].tolist() != list(range(n_test)):
        raise InputError(f"pseudo labels cover {len(table)} images, the test split has {n_test}; rerun it.")
    return table[cols].to_numpy(dtype=np.float32)


def summarize(probs: np.ndarray, threshold: float, classes: list[str]) -> dict:
    """Coverage above the threshold and the predicted class balance (label-free)."""
    pred, conf = probs.argmax(1), probs.max(1)
    return {
        "images": int(len(probs)),
        "threshold": threshold,
        "coverage": float((conf >= threshold).mean()),
        "mean_confidence": float(conf.mean()),
        "class_balance": {c: float((pred == i).mean()) for i, c in enumerate(classes)},
    }


def training_sets(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test_images: np.ndarray,
    probs: np.ndarray | None,
    train_on: str,
    threshold: float,
    label_kind: str,
    teacher_f1: float | None = None,
    min_teacher_f1: float = 0.0,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """What the student trains on, and what picks its best epoch.

    Args:
        train, val: (uint8 images (N, S, S, 3), int64 labels (N,)).
        test_images: (M, S, S, 3) uint8, unlabelled.
        probs: teacher probabilities (M, K) on test_images; needed unless train_on == 'train'.
        train_on: one of TRAIN_ON.
        threshold: pseudo-labelled test images are used when the teacher's confidence >= it.
        label_kind: 'hard' (the teacher's class) or 'soft' (its probabilities) for those images.
        teacher_f1: the teacher's own val macro F1, when known.
        min_teacher_f1: below it the teacher's pseudo labels are not trusted to pick epochs (nor
            to train on): the model trains on train only and val picks its epochs.

    Returns:
        (train set, selection set, description of the selection). Labels of the train set are
        class indices, or (N, K) float32 probabilities when soft pseudo labels are mixed in.

    Raises:
        ValueError: unknown train_on or label_kind, or pseudo labels needed but missing.
    """
    one_of("train_on", train_on, TRAIN_ON)
    one_of("labels", label_kind, LABEL_KINDS)
    if train_on == "train":
        return train, val, "val"
    if teacher_f1 is not None and teacher_f1 < min_teacher_f1:
        return (
            train,
            val,
            f"val (fallback from {train_on}: the teacher's val F1 {teacher_f1:.4f} < min_teacher_f1 "
            f"{min_teacher_f1}, so its pseudo labels neither pick epochs nor train; trained on train only)",
        )
    if probs is None:
        raise InputError(f"train_on: {train_on!r} needs the teacher's pseudo labels on test.")
    proxy = (test_images, probs.argmax(1).astype(np.int64))
    selection = "proxy: agreement with the teacher's pseudo labels on test"
    # images are indexed where they lie (tinycls.rows.Rows), never copied; labels are small
    y = np.concatenate([train[1], val[1]])
    if train_on == "train_val":
        return (Rows.concat([train[0], val[0]]), y), proxy, selection
    keep = np.flatnonzero(probs.max(1) >= threshold)
    x = Rows.concat([train[0], val[0], _rows(test_images).take(keep)])
    if label_kind == "hard":
        return (x, np.concatenate([y, proxy[1][keep]])), proxy, selection
    one_hot = np.eye(probs.shape[1], dtype=np.float32)[y]
    return (x, np.concatenate([one_hot, probs[keep]])), proxy, selection


def _rows(images: np.ndarray | Rows) -> Rows:
    return images if isinstance(images, Rows) else Rows([images])


def training_data(cache: Path, pseudo_csv: Path, teacher: Path, train_on: str, p: PseudoConfig) -> tuple[Split, str]:
    """(classes with the train and selection sets, the selection set's description) for a model trained after the
    teacher (assistant, student), from the prepared `cache`, the pseudo-label table and the
    teacher checkpoint (its val F1 decides whether its labels are trusted): training_sets."""
    classes = load_classes(cache)
    test_images, _ = load_split(cache, "test")
    probs = read_probs(pd.read_csv(pseudo_csv), classes, len(test_images)) if train_on != "train" else None
    teacher_f1 = torch.load(teacher, map_location="cpu", weights_only=True).get("val_f1") if probs is not None else None
    train, val, selection = training_sets(
        load_split(cache, "train"),
        load_split(cache, "val"),
        test_images,
        probs,
        train_on,
        p.threshold,
        p.labels,
        teacher_f1,
        p.min_teacher_f1,
    )
    return Split(classes, train, val), selection
