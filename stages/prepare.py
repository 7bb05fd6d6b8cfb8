"""Stage `prepare`: validate data/<dataset>, split, cap and cache it (see tinycls.prepare)."""

from dataclasses import asdict, dataclass
from pathlib import Path

from stages.params import CACHE, HELD_OUT, section, source, write_csv, write_json
from tinycls.config import from_section
from tinycls.prepare import prepare_dataset

METRICS = Path("metrics/prepare.json")
CLASS_COUNTS = Path("plots/prepare/class_counts.csv")  # train/val images per class, for `dvc plots`


@dataclass(frozen=True)
class PrepareParams:
    dataset: str  # folder under data/
    image_size: int  # cached side, px; models resize from it to their own input size
    val_fraction: float  # held out of train per class when there is no val/
    max_per_class: int  # 0 = all; small values make quick runs
    max_bad_fraction: float  # bad files skipped up to this share of all files, else an error
    seed: int
    workers: int  # decoding processes

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size: {self.image_size} must be >= 8.")
        if not self.dataset or "/" in self.dataset:
            raise ValueError(f"dataset: {self.dataset!r} must be a folder name under data/.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: {self.val_fraction} must be in (0, 1).")
        if not 0.0 <= self.max_bad_fraction < 1.0:
            raise ValueError(f"max_bad_fraction: {self.max_bad_fraction} must be in [0, 1).")
        if self.max_per_class < 0 or self.workers < 1:
            raise ValueError(f"max_per_class: {self.max_per_class} must be >= 0 and workers: {self.workers} >= 1.")


def main() -> None:
    p = from_section(PrepareParams, section("prepare"), source("prepare"))
    kwargs = {k: v for k, v in asdict(p).items() if k != "dataset"}
    metrics = prepare_dataset(Path("data") / p.dataset, CACHE, HELD_OUT, **kwargs)
    counts = metrics.pop("class_counts")
    write_json(METRICS, metrics)
    write_csv(CLASS_COUNTS, ["class", "train", "val"], [(c, n["train"], n["val"]) for c, n in counts.items()])
    print(f"prepare: {metrics['images']} images, {metrics['bad_files_skipped']} bad files skipped")


if __name__ == "__main__":
    main()
