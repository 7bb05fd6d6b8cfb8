"""Stage `score`: macro F1, MACs, params and the competition score of the final model (the
compress stage's output: the compressed student, or the student when compression is off), a
confusion matrix for `dvc plots`, and a submission CSV. When the final model is compressed, the
student before compression is scored beside it (`student_*`). The only reader of the test labels."""

from pathlib import Path

from stages.params import CACHE, COMPRESS, HELD_OUT, PSEUDO, STUDENT, run, section, source, write_csv, write_json
from tinycls.config import from_section
from tinycls.evaluate import ScoreConfig, score_final

METRICS = Path("metrics/score.json")
CONFUSION = Path("plots/score/confusion.csv")
SUBMISSION = Path("artifacts/score/submission.csv")


def settings() -> ScoreConfig:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    return from_section(ScoreConfig, section("score"), source("score"))


def main() -> None:
    p = settings()
    s = score_final(COMPRESS / "model.pt", STUDENT, CACHE, HELD_OUT, PSEUDO, p)
    write_json(METRICS, s.metrics)
    write_csv(CONFUSION, ["actual", "predicted"], s.confusion)
    write_csv(SUBMISSION, ["file", "prediction"], s.submission)
    m = s.metrics
    print(f"score: {m['score']:.4f} ({m['model']}: macs {m['macs']:,}, macro F1 {m['f1']:.4f} on {m['f1_split']})")


if __name__ == "__main__":
    run(main)
