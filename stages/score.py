"""Stage `score`, the only reader of the test labels and the holdout: macro F1, MACs, params and the competition
score of the final model (the compressed student, beside it the student as `student_*`; or the
student), a confusion matrix, a submission CSV, and the export stage's ONNX files' F1, size and
latency. metrics/headline.json holds the numbers that decide; metrics/score.json all of them."""

import json
from pathlib import Path

from stages.params import CACHE, COMPRESS, EXPORT, EXPORT_METRICS, HELD_OUT, PSEUDO, STUDENT, section, source, value
from stages.runner import run, write_csv, write_json
from tinycls.config import from_section
from tinycls.evaluate import ScoreConfig, headline, score_final, score_onnx, summary

METRICS = Path("metrics/score.json")
HEADLINE = Path("metrics/headline.json")
CONFUSION = Path("plots/score/confusion.csv")
SUBMISSION = Path("artifacts/score/submission.csv")


def settings() -> ScoreConfig:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    return from_section(ScoreConfig, section("score"), source("score"))


def main() -> None:
    p = settings()
    max_drop = float(value("export", "max_int8_f1_drop"))  # checked with [export] by stage `check`
    s = score_final(COMPRESS / "model.pt", STUDENT, CACHE, HELD_OUT, PSEUDO, p)
    exported = json.loads(EXPORT_METRICS.read_text())
    s.metrics |= score_onnx(EXPORT / "model.onnx", EXPORT / "model.int8.onnx", exported, CACHE, HELD_OUT, max_drop)
    write_json(METRICS, s.metrics)
    write_json(HEADLINE, headline(s.metrics))
    write_csv(CONFUSION, ["actual", "predicted"], s.confusion)
    write_csv(SUBMISSION, ["file", "prediction"], s.submission)
    print(summary(s.metrics, max_drop))


if __name__ == "__main__":
    run(main)
