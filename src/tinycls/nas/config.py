"""params.yaml [nas] and the search space's constants: what `check` reads, without Optuna."""

from dataclasses import dataclass, field
from typing import Any

from tinycls.config import one_of
from tinycls.errors import InputError

OBJECTIVES = ("val_f1", "macs")  # maximize, minimize
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "nsga2", "random")
KINDS = ("Conv", "DWConv", "InvertedResidualv2", "InvertedResidualv3", "Pass")
ACTS = ("ReLU", "Hardswish")
SLOTS = 7
# The spaces: the template's own per-slot ranges (output channels of Conv/DWConv, step 16 from
# 16, and of the inverted residuals, step 8), made for about 5M MACs at 96-224 px; and `small`,
# the same structure scaled to a budget of about 250k MACs at 32 px (the quick start), where the
# template's ranges put none of 1,400 random samples under the budget even at width 0.125. In
# `small` the stem (m1) strides and does not repeat, and downsampling comes one slot earlier:
# one stride 2 by m1, two by m2, three by m4 (of 32 px: 16, 8, 4). With the template's ranges
# and schedule a stem repeated at full resolution alone costs ~240k MACs.
# `strides_by`: slot -> stride-2 layers there must be by that slot. The template forced m2 and m4;
# its line meant to force m6 set m4's stride after m4 was built, so m6 was never forced; here it
# is. A Pass slot cannot stride: the duty moves to the next slot that is not Pass.
SPACES: dict[str, dict[str, Any]] = {
    "template": {
        "conv_out": ((16, 64), (16, 128), (16, 128), (16, 256), (16, 256), (16, 512), (128, 1024)),
        "ir_out": ((16, 32), (8, 32), (8, 40), (8, 64), (16, 80), (16, 128), (16, 160)),
        "m1_repeat": 3,
        "strides_by": {2: 1, 4: 2, 6: 3},
    },
    "small": {
        "conv_out": ((8, 32), (8, 48), (8, 64), (16, 64), (16, 96), (16, 128), (32, 128)),
        "ir_out": ((8, 24), (8, 32), (8, 40), (16, 48), (16, 64), (16, 80), (24, 96)),
        "m1_repeat": 1,
        "strides_by": {1: 1, 2: 2, 4: 3},
    },
}
# what a trial's result depends on: a study refuses to continue with other values
SETTINGS = (
    "space", "max_macs", "input_sizes", "width_multiples", "head_channels", "train_per_class", "val_per_class",
    "epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "hflip", "translate", "seed",
)  # fmt: skip
MAX_REJECTED = 2000  # sampled networks pruned in a row (over budget, or not running) before giving up
MAX_RETRY = 2  # a network whose worker died mid-trial is queued again at most this many times
MAX_STRIDES = 5  # the template's; also no map below 2x2 (tinycls.nas.space.max_strides)


@dataclass(frozen=True)
class NasConfig:
    """params.yaml [nas]: the search's space, proxy training and study."""

    trials: int = 100  # trained trials in the study; a rerun continues up to this many
    timeout_min: float = 55.0  # no new trial starts after this many minutes of this run
    max_macs: int = 256392  # trials over this are pruned before training (the default student's MACs)
    input_sizes: list[int] = field(default_factory=lambda: [32])  # px, searched when more than one
    space: str = "small"  # small (about 250k MACs at 32 px) | template (its ranges: ~5M MACs, 96+ px)
    # the network's width multiple: the largest of these whose network fits max_macs (not sampled)
    width_multiples: list[float] = field(default_factory=lambda: [1.0, 0.75, 0.5, 0.375, 0.25])
    head_channels: list[int] = field(default_factory=lambda: [64, 512, 32])  # low, high, step of the 1x1 conv
    train_per_class: int = 1000  # proxy training images per class (seeded subset of train)
    val_per_class: int = 0  # validation images per class that score a trial; 0 = all of val
    epochs: int = 8
    batch_size: int = 64
    lr: float = 5.0e-3
    weight_decay: float = 5.0e-4
    label_smoothing: float = 0.1
    hflip: bool = True
    translate: float = 0.1
    sampler: str = "tpe"  # tpe (multi-objective TPE) | nsga2 | random
    startup_trials: int = 20  # random trials before the sampler models the space (the template's 20)
    seed: int = 0  # the sampler's (worker k: seed + k) and every proxy training's
    study: str = "tinycls"
    storage: str = ""  # '' = journal file artifacts/nas/journal.log; a path = a journal file; an RDB URL
    workers: int = 1  # processes on this machine sharing the study
    heartbeat_s: int = 30  # RDB storage: a trial silent this long x 3 is failed, and retried, by the others
    device: str = "auto"

    def __post_init__(self) -> None:
        one_of("sampler", self.sampler, SAMPLERS)
        one_of("space", self.space, SPACES)
        one_of("device", self.device, ("auto", "cpu", "cuda"))
        for name in ("trials", "epochs", "batch_size", "train_per_class", "workers", "heartbeat_s", "max_macs"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: {getattr(self, name)} must be >= 1.")
        if self.val_per_class < 0 or self.startup_trials < 0:
            raise InputError("val_per_class and startup_trials must be >= 0.")
        if self.timeout_min <= 0 or self.lr <= 0:
            raise InputError(f"timeout_min ({self.timeout_min}) and lr ({self.lr}) must be > 0.")
        if not self.input_sizes or any(s < 8 for s in self.input_sizes):
            raise InputError(f"input_sizes: {self.input_sizes} must list sides >= 8 px.")
        if not self.width_multiples or any(not 0 < w <= 4 for w in self.width_multiples):
            raise InputError(f"width_multiples: {self.width_multiples} must list numbers in (0, 4].")
        lo_hi_step = self.head_channels
        if len(lo_hi_step) != 3 or not 8 <= lo_hi_step[0] <= lo_hi_step[1] or lo_hi_step[2] < 1:
            raise InputError(f"head_channels: {lo_hi_step} must be [low, high, step] with 8 <= low <= high, step >= 1.")
        if not self.study or "/" in self.study:
            raise InputError(f"study: {self.study!r} must be a non-empty name without '/'.")
        if "://" in self.storage and _password(self.storage):
            raise InputError(f"storage: {NO_PASSWORD}")


NO_PASSWORD = (
    "the URL holds a password, which would land in params.yaml, dvc.lock, git, `dvc exp show` and "
    "reports, or (given as --storage) in `ps` and shell history. Remove it from the URL "
    "(postgresql://user@host/db) and give it to the driver: a line host:port:database:user:password "
    "in ~/.pgpass (chmod 600), or the PGPASSWORD environment variable."
)


def _password(url: str) -> bool:
    """Whether a URL's user part (before the last @ of its authority) carries a non-empty password."""
    user = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
    return bool(user.partition(":")[2])
