"""params.yaml [prepare] as PrepareConfig, apart from the decoders that use it, so the `check`
stage validates it without depending on them."""

from dataclasses import dataclass

from tinycls.config import one_of
from tinycls.errors import InputError


@dataclass(frozen=True)
class PrepareConfig:
    """params.yaml [prepare]: which folder under data/, and how it is split, capped and cached."""

    dataset: str  # folder under data/
    image_size: int  # cached side, px; models resize from it to their own input size
    val_fraction: float  # held out of train per class when there is no val/
    max_per_class: int  # 0 = all; small values make quick runs
    max_bad_fraction: float  # bad files skipped up to this share of all files, else an error
    seed: int
    workers: int  # decoding processes
    holdout_fraction: float = 0.1  # test/ unlabelled: held out of train per class for the final score alone
    labelled_twice: str = "stop"  # an image in two class folders: stop (name them) or drop (leave every copy out)

    def __post_init__(self) -> None:
        one_of("labelled_twice", self.labelled_twice, ("stop", "drop"))
        if self.image_size < 8:
            raise InputError(f"image_size: {self.image_size} must be >= 8.")
        if self.dataset in ("", ".", "..") or "/" in self.dataset or "\\" in self.dataset:
            raise InputError(
                f"dataset: {self.dataset!r} must be the name of one folder under data/, e.g. fashion_mnist "
                "(no path, no '..')."
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"val_fraction: {self.val_fraction} must be in (0, 1).")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise InputError(
                f"holdout_fraction: {self.holdout_fraction} must be in [0, 1) (0 = no holdout: with an unlabelled "
                "test/, score then reports no F1)."
            )
        if not 0.0 <= self.max_bad_fraction < 1.0:
            raise InputError(f"max_bad_fraction: {self.max_bad_fraction} must be in [0, 1).")
        if self.max_per_class < 0 or self.workers < 1:
            raise InputError(f"max_per_class: {self.max_per_class} must be >= 0 and workers: {self.workers} >= 1.")
