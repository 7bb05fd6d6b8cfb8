"""The score stage's step, as a library call: the final model (and the student before
compression) scored on test by the competition's formula (params.yaml [score]: ScoreConfig),
the confusion pairs and the submission. The only reader of the test labels."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tinycls.cache import load_classes, load_held_out, load_split
from tinycls.checkpoint import load_checkpoint
from tinycls.config import one_of
from tinycls.device import DEVICES, resolve_device
from tinycls.macs import count_macs
from tinycls.onnx_runtime import onnx_logits, read_metadata, session
from tinycls.predict import predict_checkpoint
from tinycls.pseudo import read_probs
from tinycls.score import macro_f1, score_report


@dataclass(frozen=True)
class ScoreConfig:
    baseline_macs: int  # MACs of the competition's reference model
    baseline_f1: float  # its macro F1 (0.8365 fits the leaderboard; many teams used 0.8342)
    f1_floor: float  # below this F1 the F1 part of the score is 1.0
    device: str = "auto"
    batch_size: int = 512

    def __post_init__(self) -> None:
        one_of("device", self.device, DEVICES)


# metrics/headline.json, the one file DVC shows as metrics (`dvc exp show`, `dvc metrics diff`):
# the numbers that decide between runs, in this order. The rest of the score (per-class F1, the
# score's parts, the INT8 file's F1 and bytes, the pseudo labels' accuracy) is metrics/score.json,
# a detail file. Few enough that `dvc exp show --only-changed` fits 120 columns.
HEADLINE = (
    "f1",  # macro F1 of the final model (PyTorch) on test
    "score",  # the competition's score: lower is better
    "macs",
    "params",
    "latency_ms",  # ONNX Runtime FP32, batch 1, one thread, p50
    "onnx_bytes",
    "student_f1",  # the student before compression (= f1 when compression is off)
    "teacher_f1",  # the teacher's pseudo labels scored on test (labelled test sets only)
    "compression",  # what compress did: none, or its kinds
)


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The HEADLINE keys of the score stage's metrics, in HEADLINE's order (teacher_f1 is the
    pseudo labels' F1; absent when test is unlabelled)."""
    named = metrics | ({"teacher_f1": metrics["pseudo_label_f1"]} if "pseudo_label_f1" in metrics else {})
    return {k: named[k] for k in HEADLINE if k in named}


@dataclass
class Scored:
    metrics: dict[str, Any]
    confusion: list[tuple[str, str]]  # (actual, predicted) class names on the scored split
    submission: list[tuple[str, str]]  # (test file, predicted class)


def score_final(final: Path, student: Path, cache: Path, held_out: Path, pseudo_csv: Path, p: ScoreConfig) -> Scored:
    """Score the `final` checkpoint on test (on val when test is unlabelled), with the
    uncompressed `student`'s numbers beside it (`student_*`) and how good the teacher's pseudo
    labels were (reported, never trained on)."""
    device = resolve_device(p.device)
    classes = load_classes(cache)
    test_x = load_split(cache, "test")[0]
    test_names, test_y = load_held_out(held_out)

    def evaluate(path: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        """(score report, labels and predictions of the scored split, test predictions, checkpoint meta)."""
        model, meta = load_checkpoint(path, device, classes)
        test_pred = predict_checkpoint(model, meta, test_x, device, p.batch_size).argmax(1).numpy()
        if test_y is not None:
            y, pred = test_y, test_pred
        else:  # unlabelled test set: val is all there is, and it also picked the best epoch
            val_x, y = load_split(cache, "val")
            pred = predict_checkpoint(model, meta, val_x, device, p.batch_size).argmax(1).numpy()
        macs, n_params = count_macs(model, meta["input_size"])
        report = score_report(y, pred, classes, macs, n_params, p.baseline_macs, p.baseline_f1, p.f1_floor)
        return report, y, pred, test_pred, meta

    metrics, y, pred, test_pred, meta = evaluate(final)
    split = (
        "test"
        if test_y is not None
        else "val (test/ is unlabelled; val also selected the epoch, so this is optimistic)"
    )
    metrics |= {
        "f1_split": split,
        "model": meta.get("stage", "student"),  # compress | student: which stage made the scored model
        "compression": meta.get("compression", "none"),
        "arch": meta["arch"],
        "input_size": meta["input_size"],
    }
    # the same numbers for the student before compression (itself when compression is off), so
    # every run's score.json has them and experiments compare with or without compression
    before = evaluate(student)[0] if metrics["model"] == "compress" else metrics
    metrics |= {f"student_{k}": before[k] for k in ("f1", "macs", "params", "score")}
    if test_y is not None:
        teacher = read_probs(pd.read_csv(pseudo_csv), classes, len(test_y)).argmax(1)
        metrics |= {
            "pseudo_label_f1": macro_f1(test_y, teacher, len(classes)),
            "pseudo_label_accuracy": float((teacher == test_y).mean()),
        }
    confusion = [(classes[a], classes[b]) for a, b in zip(y, pred, strict=True)]
    return Scored(metrics, confusion, list(zip(test_names, [classes[c] for c in test_pred], strict=True)))


def score_onnx(
    fp32: Path, int8: Path, export_metrics: dict, cache: Path, held_out: Path, max_int8_f1_drop: float
) -> dict:
    """The exported files scored as the final model is (ONNX Runtime, on test; on val when test is
    unlabelled): macro F1 of FP32 and INT8, the drop (flagged above `max_int8_f1_drop`; the INT8
    file is reported, never chosen for you), and the export stage's headline costs beside them."""
    classes = load_classes(cache)
    test_y = load_held_out(held_out)[1]
    x, y = (load_split(cache, "test")[0], test_y) if test_y is not None else load_split(cache, "val")
    f1 = {}
    for name, path in (("onnx", fp32), ("int8", int8)):
        pred = onnx_logits(session(path), read_metadata(path), x).argmax(1)
        f1[name] = macro_f1(y, pred, len(classes))
    drop = f1["onnx"] - f1["int8"]
    fp, q = export_metrics["fp32"], export_metrics["int8"]
    return {
        "onnx_f1": f1["onnx"],
        "int8_f1": f1["int8"],
        "int8_f1_drop": drop,
        "int8_f1_drop_too_large": drop > max_int8_f1_drop,  # export.max_int8_f1_drop
        "onnx_bytes": fp["bytes"],
        "int8_bytes": q["bytes"],
        "latency_ms": fp["latency_ms_p50"],  # ONNX Runtime, batch 1, one thread, p50
        "int8_latency_ms": q["latency_ms_p50"],
    }
