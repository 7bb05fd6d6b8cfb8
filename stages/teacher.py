"""Stage `teacher`: train the big teacher (an EfficientNetV2 by default) with random-box CutMix."""

from pathlib import Path

from stages.params import CACHE, TEACHER, section
from stages.training import split_section, train_model
from tinycls.prepare import load_classes, load_split

LIVE = Path("live/teacher")
METRICS = Path("metrics/teacher.json")


def main() -> None:
    m, cfg, _ = split_section("teacher", section("teacher"))
    train, val = load_split(CACHE, "train"), load_split(CACHE, "val")
    train_model(
        "teacher",
        m,
        cfg,
        load_classes(CACHE),
        train,
        val,
        TEACHER,
        LIVE,
        METRICS,
        {"selection": "val", "cutmix_prob": cfg.cutmix_prob, "pretrained": m.pretrained},
    )


if __name__ == "__main__":
    main()
