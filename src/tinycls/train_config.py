"""The training loop's settings: TrainConfig, built by a stage from its params.yaml section and
checked on construction, so a bad value fails before any data is read."""

from dataclasses import dataclass

from tinycls.config import one_of
from tinycls.device import DEVICES
from tinycls.errors import InputError
from tinycls.losses import LOSSES

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle")


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the loop; a stage builds it from its params.yaml section."""

    epochs: int
    batch_size: int
    optimizer: str = "adamw"
    lr: float = 3.0e-3
    weight_decay: float = 5.0e-4
    momentum: float = 0.9  # SGD only
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    hflip: bool = True
    translate: float = 0.1  # max random shift, fraction of the side
    zoom: float = 1.0  # < 1: each view a crop of a share of the side drawn from [zoom, 1]; 1 = off
    mix: float = 0.0  # share of images blended with another (mixup, Beta(1, 1)), labels alike; 0 = off
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision, CUDA only
    eval_batch_size: int = 512
    cutmix_prob: float = 0.0  # share of batches mixed by random-box CutMix (timm's Mixup)
    cutmix_alpha: float = 1.0  # Beta(alpha, alpha) draws the box's area
    ema_decay: float = 0.0  # EMA of weights (timm's ModelEmaV3) evaluated and saved; 0 = off
    loss: str = "ce"  # ce | focal | f1_focal (tinycls.losses.student_loss)
    focal_gamma: float = 2.0  # focal and f1_focal
    f1_weight: float = 0.6  # f1_focal: weight of the soft-F1 part (focal gets the rest)
    # NHWC weights (and teachers): oneDNN's and cuDNN's faster convolutions, measured 1.4x (student)
    # to 2x (EfficientNet-Lite0 teacher) per CPU training step; false for a model whose code needs NCHW
    channels_last: bool = True
    # torchrun processes (one per GPU, else per CPU core) sharing each batch of batch_size images:
    # the stage's dvc.yaml cmd starts them (stages/launch.py)
    processes: int = 1
    sync_bn: bool = False  # processes > 1: BatchNorm over the whole batch, not each process's share

    def __post_init__(self) -> None:
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("device", self.device, DEVICES)
        one_of("loss", self.loss, LOSSES)
        if self.focal_gamma < 0:
            raise InputError(f"focal_gamma: {self.focal_gamma} must be >= 0.")
        if not 0.0 <= self.f1_weight <= 1.0:
            raise InputError(f"f1_weight: {self.f1_weight} must be in [0, 1].")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: {getattr(self, name)} must be >= 1.")
        if self.processes > 1:
            if self.batch_size < 2 * self.processes:
                raise InputError(
                    f"batch_size: {self.batch_size} is the batch of all {self.processes} processes together; each "
                    f"needs at least 2 images for BatchNorm. Set batch_size >= {2 * self.processes}."
                )
            from tinycls.distributed import check_processes

            check_processes(self.processes, self.device)
        if self.lr <= 0:
            raise InputError(f"lr: {self.lr} must be > 0.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"label_smoothing: {self.label_smoothing} must be in [0, 1).")
        if not 0.0 <= self.translate < 0.5:
            raise InputError(f"translate: {self.translate} must be in [0, 0.5).")
        if not 0.0 < self.zoom <= 1.0:
            raise InputError(f"zoom: {self.zoom} must be in (0, 1] (1 = no zoom).")
        if not 0.0 <= self.mix <= 1.0:
            raise InputError(f"mix: {self.mix} must be in [0, 1] (0 = no mixup).")
        if self.mix > 0 and self.cutmix_prob > 0:
            raise InputError(
                f"mix {self.mix} and cutmix_prob {self.cutmix_prob}: pick one way of mixing, set the other to 0."
            )
        if not 0.0 <= self.cutmix_prob <= 1.0:
            raise InputError(f"cutmix_prob: {self.cutmix_prob} must be in [0, 1].")
        if self.cutmix_alpha <= 0:
            raise InputError(f"cutmix_alpha: {self.cutmix_alpha} must be > 0.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"ema_decay: {self.ema_decay} must be in [0, 1) (0 = off).")
