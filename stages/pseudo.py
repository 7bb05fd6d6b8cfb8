"""Stage `pseudo`: the teacher labels the test split (optionally with flip TTA): every image's
class, confidence and probabilities. No test label is read here."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stages.params import CACHE, PSEUDO, TEACHER, section, source, write_json
from tinycls.checkpoint import load_checkpoint
from tinycls.config import from_section, one_of
from tinycls.device import DEVICES, resolve_device
from tinycls.prepare import load_classes, load_split
from tinycls.pseudo import LABEL_KINDS, TRAIN_ON, pseudo_table, read_probs, summarize, teacher_probs, training_sets

METRICS = Path("metrics/pseudo.json")


@dataclass(frozen=True)
class PseudoParams:
    threshold: float  # test images with teacher confidence >= this may be trained on
    labels: str  # hard (teacher's class) | soft (its probabilities)
    hflip_tta: bool  # average the teacher over the image and its mirror
    batch_size: int
    device: str
    min_teacher_f1: float = 0.0  # a teacher below this val F1 neither picks epochs nor trains (train only)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold: {self.threshold} must be in [0, 1].")
        if not 0.0 <= self.min_teacher_f1 <= 1.0:
            raise ValueError(f"min_teacher_f1: {self.min_teacher_f1} must be in [0, 1] (0 = always trust it).")
        one_of("labels", self.labels, LABEL_KINDS)
        one_of("device", self.device, DEVICES)


@dataclass(frozen=True)
class DataParams:
    """What a model trained after the teacher trains on ([student] and [assistant] keys)."""

    train_on: str  # one of tinycls.pseudo.TRAIN_ON
    allow_unmatched_init: bool = False  # student: a pretrain checkpoint that fits nothing is an error unless true

    def __post_init__(self) -> None:
        one_of("train_on", self.train_on, TRAIN_ON)


def training_data(
    train_on: str, p: PseudoParams
) -> tuple[list[str], tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """(classes, train set, selection set, its description) for a model trained after the
    teacher (assistant, student): train, train + val, or + pseudo-labelled test (train_on)."""
    classes = load_classes(CACHE)
    test_images, _ = load_split(CACHE, "test")
    probs = read_probs(pd.read_csv(PSEUDO), classes, len(test_images)) if train_on != "train" else None
    teacher_f1 = torch.load(TEACHER, map_location="cpu", weights_only=True).get("val_f1") if probs is not None else None
    train, val, selection = training_sets(
        load_split(CACHE, "train"),
        load_split(CACHE, "val"),
        test_images,
        probs,
        train_on,
        p.threshold,
        p.labels,
        teacher_f1,
        p.min_teacher_f1,
    )
    return classes, train, val, selection


def main() -> None:
    p = from_section(PseudoParams, section("pseudo"), source("pseudo"))
    device = resolve_device(p.device)
    classes = load_classes(CACHE)
    model, meta = load_checkpoint(TEACHER, device, classes, role="teacher")
    test_images, _ = load_split(CACHE, "test")
    if len(test_images) == 0:
        raise ValueError(f"{CACHE}/test_images.npy: the test split is empty; put images in data/<dataset>/test/.")
    probs = teacher_probs(model, meta, test_images, device, p.hflip_tta, p.batch_size)
    PSEUDO.parent.mkdir(parents=True, exist_ok=True)
    pseudo_table(probs, classes).to_csv(PSEUDO, index=False, float_format="%.6f")
    metrics = summarize(probs, p.threshold, classes)
    write_json(METRICS, {**metrics, "hflip_tta": p.hflip_tta, "teacher": meta["arch"]})
    print(f"pseudo: {metrics['images']} test images, {metrics['coverage']:.1%} at confidence >= {p.threshold}")


if __name__ == "__main__":
    main()
