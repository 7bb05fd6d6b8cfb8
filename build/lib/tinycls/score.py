"""The competition's score (lower is better) and the metrics it is built from."""

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from tinycls.errors import InputError


def competition_score(
    macs: int, f1: float, baseline_macs: int, baseline_f1: float, f1_floor: float = 0.5
) -> dict[str, float]:
    """score = macs / baseline_macs + score_f1, where score_f1 is 1 - f1/baseline_f1 below the
    baseline, half that above it, and 1.0 when f1 < f1_floor.

    Example: macs 1,083,210 and f1 0.6002 with baselines 13,863,553 / 0.8365 give
    0.0781 + 0.2825 = 0.3606.

    Raises:
        ValueError: a baseline is not positive or f1 is outside [0, 1].
    """
    if baseline_macs <= 0 or baseline_f1 <= 0:
        raise InputError(f"baseline_macs={baseline_macs}, baseline_f1={baseline_f1}: both must be > 0.")
    if not 0.0 <= f1 <= 1.0:
        raise InputError(f"f1={f1}: expected a value in [0, 1].")
    score_macs = macs / baseline_macs
    if f1 < f1_floor:
        score_f1 = 1.0
    elif f1 < baseline_f1:
        score_f1 = 1.0 - f1 / baseline_f1
    else:
        score_f1 = 0.5 * (1.0 - f1 / baseline_f1)
    return {"score_macs": score_macs, "score_f1": score_f1, "score": score_macs + score_f1}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """scikit-learn's macro F1 over all `num_classes` labels (absent classes count as 0)."""
    return float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0))


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, float]:
    scores = f1_score(y_true, y_pred, labels=list(range(len(classes))), average=None, zero_division=0)
    return {c: float(s) for c, s in zip(classes, scores, strict=True)}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class."""
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def score_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: list[str],
    macs: int,
    params: int,
    baseline_macs: int,
    baseline_f1: float,
    f1_floor: float,
) -> dict:
    """Everything metrics/score.json holds: macs, params, f1, per-class F1 and the score parts."""
    f1 = macro_f1(y_true, y_pred, len(classes))
    return {
        "macs": macs,
        "params": params,
        "f1": f1,
        **competition_score(macs, f1, baseline_macs, baseline_f1, f1_floor),
        "accuracy": float((y_true == y_pred).mean()),
        "per_class_f1": per_class_f1(y_true, y_pred, classes),
    }
