"""Stage `prepare`: validate data/<dataset>, split, cap and cache it (see tinycls.prepare)."""

from dataclasses import asdict
from pathlib import Path

from stages.params import CACHE, DATA, HELD_OUT, section, source
from stages.runner import run, write_csv, write_json
from tinycls.config import from_section
from tinycls.prepare import prepare_dataset
from tinycls.prepare_config import PrepareConfig

METRICS = Path("metrics/prepare.json")
CLASS_COUNTS = Path("plots/prepare/class_counts.csv")  # train/val images per class, for `dvc plots`


def settings() -> PrepareConfig:
    """The params this stage reads, checked (stage `check` checks the same section through
    tinycls.prepare_config alone, so that it does not depend on the decoders)."""
    return from_section(PrepareConfig, section("prepare"), source("prepare"))


def main() -> None:
    p = settings()
    kwargs = {k: v for k, v in asdict(p).items() if k != "dataset"}
    metrics = prepare_dataset(DATA / p.dataset, CACHE, HELD_OUT, **kwargs)
    counts = metrics.pop("class_counts")
    write_json(METRICS, metrics)
    write_csv(CLASS_COUNTS, ["class", "train", "val"], [(c, n["train"], n["val"]) for c, n in counts.items()])
    print(f"prepare: {metrics['images']} images, {metrics['bad_files_skipped']} bad files skipped")


if __name__ == "__main__":
    run(main)
