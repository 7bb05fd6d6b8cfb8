"""Stage `teacher`: train or fine-tune the big teacher (ImageNet EfficientNet-Lite0 from a PyPI
package by default, an EfficientNetV2 for the full recipe) with random-box CutMix."""

from pathlib import Path
from typing import Any

from stages.params import CACHE, TEACHER, section, source
from stages.runner import resumable, run, write_json
from stages.training import live_log, split_section
from tinycls.cache import Split, cap_per_class, load_classes, load_split
from tinycls.errors import InputError
from tinycls.run import ModelConfig, train_model
from tinycls.train import TrainConfig

LIVE = Path("live/teacher")
METRICS = Path("metrics/teacher.json")


def settings(params: dict[str, Any]) -> tuple[ModelConfig, TrainConfig, int]:
    """A [teacher] section, checked: model, loop, max_per_class (stage `check` calls it too)."""
    m, cfg, other = split_section("teacher", params, ("max_per_class",))
    cap = other.get("max_per_class", 0)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise InputError(f"{source('teacher')}.max_per_class: {cap!r} must be an integer >= 0 (0 = every image).")
    return m, cfg, cap


def train_teacher(params: dict[str, Any], checkpoint: Path, live: Path, metrics: Path | None) -> dict[str, Any]:
    """Train the teacher a [teacher] section describes on the prepared cache (its train images
    capped at max_per_class per class); returns its metrics (benchmarks.teacher calls it too).

    Raises:
        ValueError: a bad key or value in `params`, before any training.
    """
    m, cfg, cap = settings(params)
    (x, y), val = load_split(CACHE, "train"), load_split(CACHE, "val")
    keep = cap_per_class(y, cap, cfg.seed)
    with resumable("teacher") as resume, live_log(live) as log:
        split = Split(load_classes(CACHE), (x.take(keep), y[keep]), val)
        out = train_model("teacher", m, cfg, split, checkpoint, log=log, resume=resume / checkpoint.name)
    out.update(selection="val", cutmix_prob=cfg.cutmix_prob, pretrained=m.pretrained, max_per_class=cap)
    if metrics is not None:
        write_json(metrics, out)
    return out


def main() -> None:
    train_teacher(section("teacher"), TEACHER, LIVE, METRICS)


if __name__ == "__main__":
    run(main)
