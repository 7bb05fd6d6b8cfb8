"""Stage `score`: macro F1, MACs, params and the competition score of the final model (the
compress stage's output: the compressed student, or the student when compression is off), a
confusion matrix for `dvc plots`, and a submission CSV. When the final model is compressed, the
student before compression is scored beside it (`student_*`). The only reader of the test labels."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.params import CACHE, COMPRESS, HELD_OUT, PSEUDO, STUDENT, section, source, write_csv, write_json
from tinycls.checkpoint import load_checkpoint
from tinycls.config import from_section
from tinycls.device import resolve_device
from tinycls.macs import count_macs
from tinycls.predict import predict_checkpoint
from tinycls.prepare import load_classes, load_held_out, load_split
from tinycls.pseudo import read_probs
from tinycls.score import macro_f1, score_report

METRICS = Path("metrics/score.json")
CONFUSION = Path("plots/score/confusion.csv")
SUBMISSION = Path("artifacts/score/submission.csv")


@dataclass(frozen=True)
class ScoreParams:
    baseline_macs: int  # MACs of the competition's reference model
    baseline_f1: float  # its macro F1 (0.8365 fits the leaderboard; many teams used 0.8342)
    f1_floor: float  # below this F1 the F1 part of the score is 1.0
    device: str = "auto"
    batch_size: int = 512


def main() -> None:
    p = from_section(ScoreParams, section("score"), source("score"))
    device = resolve_device(p.device)
    final = COMPRESS / "model.pt"
    classes = load_classes(CACHE)
    test_x = load_split(CACHE, "test")[0]
    test_names, test_y = load_held_out(HELD_OUT)

    def evaluate(path: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        """(score report, labels and predictions of the scored split, test predictions, checkpoint meta)."""
        model, meta = load_checkpoint(path, device, classes)
        test_pred = predict_checkpoint(model, meta, test_x, device, p.batch_size).argmax(1).numpy()
        if test_y is not None:
            y, pred = test_y, test_pred
        else:  # unlabelled test set: val is all there is, and it also picked the best epoch
            val_x, y = load_split(CACHE, "val")
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
    before = evaluate(STUDENT)[0] if metrics["model"] == "compress" else metrics
    metrics |= {f"student_{k}": before[k] for k in ("f1", "macs", "params", "score")}
    if test_y is not None:  # how good the teacher's pseudo labels were; reported, never trained on
        teacher = read_probs(pd.read_csv(PSEUDO), classes, len(test_y)).argmax(1)
        metrics |= {
            "pseudo_label_f1": macro_f1(test_y, teacher, len(classes)),
            "pseudo_label_accuracy": float((teacher == test_y).mean()),
        }
    write_json(METRICS, metrics)
    write_csv(CONFUSION, ["actual", "predicted"], [(classes[a], classes[b]) for a, b in zip(y, pred, strict=True)])
    write_csv(
        SUBMISSION,
        ["file", "prediction"],
        list(zip(test_names, [classes[c] for c in test_pred], strict=True)),
    )
    m = metrics
    print(f"score: {m['score']:.4f} ({m['model']}: macs {m['macs']:,}, macro F1 {m['f1']:.4f} on {split})")


if __name__ == "__main__":
    main()
