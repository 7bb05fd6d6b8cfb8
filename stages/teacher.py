"""Stage `teacher`: train or fine-tune the big teacher (ImageNet EfficientNet-Lite0 from a PyPI
package by default, an EfficientNetV2 for the full recipe) with random-box CutMix."""

from pathlib import Path

from stages.params import CACHE, TEACHER, section, source
from stages.training import split_section, train_model
from tinycls.data import cap_per_class
from tinycls.prepare import load_classes, load_split

LIVE = Path("live/teacher")
METRICS = Path("metrics/teacher.json")


def main() -> None:
    m, cfg, other = split_section("teacher", section("teacher"), ("max_per_class",))
    cap = other.get("max_per_class", 0)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ValueError(f"{source('teacher')}.max_per_class: {cap!r} must be an integer >= 0 (0 = every image).")
    (x, y), val = load_split(CACHE, "train"), load_split(CACHE, "val")
    keep = cap_per_class(y, cap, cfg.seed)
    train_model(
        "teacher",
        m,
        cfg,
        load_classes(CACHE),
        (x[keep], y[keep]),
        val,
        TEACHER,
        LIVE,
        METRICS,
        {"selection": "val", "cutmix_prob": cfg.cutmix_prob, "pretrained": m.pretrained, "max_per_class": cap},
    )


if __name__ == "__main__":
    main()
