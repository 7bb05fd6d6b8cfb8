"""The score stage's step, as a library call: the final model (and the student before
compression) scored on test by the competition's formula (params.yaml [score]: ScoreConfig),
the confusion pairs and the submission. The only reader of the test labels and of the holdout.

F1 is only ever measured on images no stage trained on or picked epochs with: test when it is
labelled, else prepare's holdout (tinycls.holdout), else none (`f1: null`, and why)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tinycls.cache import load_classes, load_held_out, load_split
from tinycls.checkpoint import load_checkpoint
from tinycls.config import one_of
from tinycls.device import DEVICES, resolve_device
from tinycls.holdout import load_holdout
from tinycls.macs import count_macs
from tinycls.onnx_runtime import onnx_logits, read_metadata, session
from tinycls.predict import predict_checkpoint
from tinycls.pseudo import read_probs
from tinycls.rows import Rows
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


NO_F1 = (
    "none: test/ is unlabelled and prepare.holdout_fraction is 0, so every labelled image was trained on or "
    "picked the epoch; label test/ or set prepare.holdout_fraction > 0 for an honest F1"
)


def scored_split(cache: Path, held_out: Path) -> tuple[Rows, np.ndarray, str] | None:
    """(images, labels, what they are) that the final F1 is measured on: test when it is labelled,
    else the holdout beside the held-out file; None when neither (no F1 would be honest)."""
    test_y = load_held_out(held_out)[1]
    if test_y is not None:
        return load_split(cache, "test")[0], test_y, "test"
    if (held := load_holdout(held_out.parent / "holdout")) is None:
        return None
    return (
        *held,
        f"holdout ({len(held[1])} train/ images no stage trained on or picked epochs with; test/ is unlabelled)",
    )


def summary(m: dict[str, Any], max_int8_f1_drop: float) -> str:
    """What the score stage prints: the score and the scored model, then the exported files."""
    f1 = "no F1" if m["f1"] is None else f"macro F1 {m['f1']:.4f}"
    head = f"score: {_num(m['score'])} ({m['model']}: macs {m['macs']:,}, {f1} on {m['f1_split']})"
    flag = f" > export.max_int8_f1_drop {max_int8_f1_drop:g}: kept, not chosen" if m["int8_f1_drop_too_large"] else ""
    drop = "" if m["int8_f1_drop"] is None else f" (drop {m['int8_f1_drop']:+.4f}{flag})"
    return (
        f"{head}\nONNX: {m['onnx_bytes']:,} B, {m['latency_ms']:.3f} ms, F1 {_num(m['onnx_f1'])}; INT8: "
        f"{m['int8_bytes']:,} B, {m['int8_latency_ms']:.3f} ms, F1 {_num(m['int8_f1'])}{drop}"
    )


def _num(v: float | None) -> str:
    return "none" if v is None else f"{v:.4f}"


@dataclass
class Scored:
    metrics: dict[str, Any]
    confusion: list[tuple[str, str]]  # (actual, predicted) class names on the scored split
    submission: list[tuple[str, str]]  # (test file, predicted class)


def score_final(final: Path, student: Path, cache: Path, held_out: Path, pseudo_csv: Path, p: ScoreConfig) -> Scored:
    """Score the `final` checkpoint on test (on the holdout when test is unlabelled; no F1 without
    one), with the uncompressed `student`'s numbers beside it (`student_*`) and how good the
    teacher's pseudo labels were (reported, never trained on)."""
    device = resolve_device(p.device)
    classes = load_classes(cache)
    test_x = load_split(cache, "test")[0]
    test_names, test_y = load_held_out(held_out)
    scored = scored_split(cache, held_out)
    none = np.zeros(0, dtype=np.int64)

    def evaluate(path: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        """(score report, labels and predictions of the scored split, test predictions, checkpoint meta)."""
        model, meta = load_checkpoint(path, device, classes)
        test_pred = predict_checkpoint(model, meta, test_x, device, p.batch_size).argmax(1).numpy()
        macs, n_params = count_macs(model, meta["input_size"])
        if scored is None:
            return {"macs": macs, "params": n_params, "f1": None, "score": None}, none, none, test_pred, meta
        x, y, what = scored
        pred = (
            test_pred if what == "test" else predict_checkpoint(model, meta, x, device, p.batch_size).argmax(1).numpy()
        )
        report = score_report(y, pred, classes, macs, n_params, p.baseline_macs, p.baseline_f1, p.f1_floor)
        return report, y, pred, test_pred, meta

    metrics, y, pred, test_pred, meta = evaluate(final)
    metrics |= {
        "f1_split": NO_F1 if scored is None else scored[2],
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
    """The exported files scored as the final model is (ONNX Runtime, on scored_split; none without
    it): macro F1 of FP32 and INT8, the drop (flagged above `max_int8_f1_drop`; the INT8 file is
    reported, never chosen for you), and the export stage's headline costs beside them."""
    classes = load_classes(cache)
    scored = scored_split(cache, held_out)
    f1: dict[str, float | None] = {"onnx": None, "int8": None}
    for name, path in (("onnx", fp32), ("int8", int8)) if scored is not None else ():
        pred = onnx_logits(session(path), read_metadata(path), scored[0]).argmax(1)
        f1[name] = macro_f1(scored[1], pred, len(classes))
    drop = None if scored is None else f1["onnx"] - f1["int8"]
    fp, q = export_metrics["fp32"], export_metrics["int8"]
    return {
        "onnx_f1": f1["onnx"],
        "int8_f1": f1["int8"],
        "int8_f1_drop": drop,
        "int8_f1_drop_too_large": drop is not None and drop > max_int8_f1_drop,  # export.max_int8_f1_drop
        "onnx_bytes": fp["bytes"],
        "int8_bytes": q["bytes"],
        "latency_ms": fp["latency_ms_p50"],  # ONNX Runtime, batch 1, one thread, p50
        "int8_latency_ms": q["latency_ms_p50"],
    }
