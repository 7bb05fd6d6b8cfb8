"""Stage `student`: train the small student on train, train + val, or train + val +
pseudo-labelled test (params), picking its best epoch on val or on the teacher's proxy."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stages.params import CACHE, PSEUDO, STUDENT, section, source
from stages.pseudo import PseudoParams
from stages.training import split_section, train_model
from tinycls.config import from_section, one_of
from tinycls.prepare import load_classes, load_split
from tinycls.pseudo import TRAIN_ON, read_probs, training_sets

LIVE = Path("live/student")
METRICS = Path("metrics/student.json")
KD_MODES = ("none",)  # vanilla and true_label arrive with the distillation issue


@dataclass(frozen=True)
class DataParams:
    train_on: str  # one of tinycls.pseudo.TRAIN_ON

    def __post_init__(self) -> None:
        one_of("train_on", self.train_on, TRAIN_ON)


@dataclass(frozen=True)
class KDParams:
    mode: str

    def __post_init__(self) -> None:
        one_of("mode", self.mode, KD_MODES)


def main() -> None:
    m, cfg, other = split_section("student", section("student"), ("train_on",))
    data = from_section(DataParams, other, source("student"))
    pseudo = from_section(PseudoParams, section("pseudo"), source("pseudo"))
    from_section(KDParams, section("kd"), source("kd"))
    classes = load_classes(CACHE)
    test_images, _ = load_split(CACHE, "test")
    probs = read_probs(pd.read_csv(PSEUDO), classes, len(test_images)) if data.train_on != "train" else None
    train, val, selection = training_sets(
        load_split(CACHE, "train"),
        load_split(CACHE, "val"),
        test_images,
        probs,
        data.train_on,
        pseudo.threshold,
        pseudo.labels,
    )
    train_model(
        "student",
        m,
        cfg,
        classes,
        train,
        val,
        STUDENT,
        LIVE,
        METRICS,
        {"train_on": data.train_on, "selection": selection},
    )


if __name__ == "__main__":
    main()
