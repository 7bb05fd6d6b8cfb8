"""Stage `teacher`: train or fine-tune the big teacher (ImageNet EfficientNet-Lite0 from a PyPI
package by default, an EfficientNetV2 for the full recipe) with random-box CutMix."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.params import CACHE, TEACHER, section
from stages.runner import resumable, run, write_json
from stages.training import live_log, split_section
from tinycls.cache import Split, cap_per_class, load_classes, load_split
from tinycls.run import ModelConfig, train_model
from tinycls.train import TrainConfig

LIVE = Path("live/teacher")
METRICS = Path("metrics/teacher.json")


@dataclass(frozen=True)
class Cap:
    max_per_class: int = 0  # train images per class the teacher sees; 0 = every image


def settings(params: dict[str, Any]) -> tuple[ModelConfig, TrainConfig, int]:
    """A [teacher] section, checked: model, loop, max_per_class (stage `check` calls it too)."""
    m, cfg, (cap,) = split_section("teacher", params, [(Cap, ("max_per_class",))])
    return m, cfg, cap.max_per_class


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
