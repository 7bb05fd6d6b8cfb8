"""The compress stage's step, as a library call: its settings (CompressConfig, params.yaml
[compress]), and a trained student compressed (tinycls.compress), its BatchNorm statistics
re-estimated and measured before and after, or passed through unchanged when compression is
off; fine-tuning is then an ordinary tinycls.run.train_model of the compressed network."""

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinycls.checkpoint import load_checkpoint
from tinycls.compress import IMPORTANCES, compress, recalibrate_bn
from tinycls.config import one_of
from tinycls.device import resolve_device
from tinycls.distill import KDConfig
from tinycls.errors import InputError
from tinycls.macs import count_macs
from tinycls.structure import BLOCK_SELECTIONS
from tinycls.train import TrainConfig, validate


@dataclass(frozen=True)
class CompressConfig:
    keep_blocks: list[int] = field(default_factory=list)  # blocks kept per stage, e.g. [2, 5, 2]; [] = all
    block_selection: str = "first"  # first | weight_std (the removable blocks with the largest weight std)
    split_groups: int = 1  # grouped convs get this many times more groups (2: 3 -> 6); 1 = off
    channel_ratio: float = 0.0  # Torch-Pruning: share of channels removed, [0, 1); 0 = off
    target_macs: int = 0  # > 0: the least channel pruning that gets MACs <= this (overrides channel_ratio)
    importance: str = "l2"  # l1 | l2: channels with the smallest weight norm go first
    bn_images: int = 2048  # training images that re-estimate BatchNorm statistics after compression; 0 = off
    epochs: int = 6  # fine-tuning epochs after compression; 0 = none
    lr: float = 2.0e-3  # fine-tuning peak learning rate (the rest of the loop is the student's)
    kd_teachers: list[str] = field(default_factory=list)  # teachers of the fine-tuning; [] = kd.teachers

    def __post_init__(self) -> None:
        k = self.keep_blocks
        if not isinstance(k, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in k):
            raise InputError(
                f"keep_blocks: {k!r} must be a list of block counts, one per stage (e.g. [2, 5, 2] for "
                "ShuffleNetV1's [4, 8, 4]), or [] to keep every block."
            )
        one_of("block_selection", self.block_selection, BLOCK_SELECTIONS)
        if self.split_groups < 1:
            raise InputError(f"split_groups: {self.split_groups} must be >= 1 (1 = off, 2 = 3 -> 6 groups).")
        if not 0.0 <= self.channel_ratio < 1.0:
            raise InputError(f"channel_ratio: {self.channel_ratio} must be in [0, 1): the share of channels removed.")
        if self.target_macs < 0:
            raise InputError(f"target_macs: {self.target_macs} must be >= 0 (0 = off).")
        one_of("importance", self.importance, IMPORTANCES)
        if self.bn_images < 0:
            raise InputError(f"bn_images: {self.bn_images} must be >= 0 (0 = keep the student's statistics).")
        if self.epochs < 0:
            raise InputError(f"epochs: {self.epochs} must be >= 0 (0 = no fine-tuning).")
        if self.lr <= 0:
            raise InputError(f"lr: {self.lr} must be > 0.")
        if not isinstance(self.kd_teachers, list):
            raise InputError(f"kd_teachers: {self.kd_teachers!r} must be a list, e.g. [student] or [] (= kd.teachers).")

    @property
    def on(self) -> bool:
        return bool(self.keep_blocks) or self.split_groups != 1 or self.channel_ratio > 0 or self.target_macs > 0

    def fine_tune_kd(self, kd: KDConfig, where: str = "compress") -> KDConfig:
        """The kd settings of the fine-tuning: kd's own, or kd's mode with kd_teachers as the
        teachers (equal weights), e.g. [student]: the uncompressed student teaches its copy.
        `where` names this section in the messages.

        Raises:
            ValueError: teachers named with kd.mode none, an unknown name, or the assistant when
                kd.teachers does not list it (it is trained only then).
        """
        names = self.kd_teachers
        if not names:
            return kd
        if kd.mode == "none":
            raise InputError(
                f"{where}.kd_teachers: {names} teach nothing with kd.mode none; set kd.mode true_label or vanilla."
            )
        if "assistant" in names and "assistant" not in kd.teachers:
            raise InputError(
                f"{where}.kd_teachers: {names}: the assistant is trained only when kd.teachers lists it; add it there."
            )
        try:
            return kd.taught_by(names)
        except InputError as e:
            raise InputError(f"{where}.kd_teachers: {e}") from None


@dataclass
class Compressed:
    model: nn.Module  # the compressed network, BatchNorm re-estimated, not yet fine-tuned
    meta_extra: dict[str, Any]  # checkpoint fields that rebuild it (arch_kwargs) and name it (compression)
    metrics: dict[str, Any]  # MACs, params and selection F1 before and after


def compress_student(
    student: nn.Module,
    meta: dict[str, Any],
    p: CompressConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    name: str = "student",
) -> Compressed:
    """Compress a trained `student` (its checkpoint `meta`) as `p` says, re-estimate BatchNorm
    on `p.bn_images` training images (drawn with cfg.seed), and measure it on the selection set.

    Raises:
        ValueError: a student that is already compressed, or any bad setting (tinycls.compress),
            before any fine-tuning.
    """
    structural = {k: v for k, v in meta["arch_kwargs"].items() if k != "spec"}  # a nas: spec is no compression
    if structural:
        raise InputError(f"{name}: already compressed ({structural}); retrain it with `dvc repro student`.")
    size = meta["input_size"]
    macs, n_params = count_macs(student, size)
    small, structure = compress(
        student, size, p.keep_blocks, p.block_selection, p.split_groups, p.channel_ratio, p.target_macs,
        p.importance, meta["arch"],
    )  # fmt: skip
    small_macs, small_params = count_macs(small, size)
    print(f"compress: {structure.describe()}: {macs:,} -> {small_macs:,} MACs, {n_params:,} -> {small_params:,} params")
    device = resolve_device(cfg.device)
    if p.bn_images:
        pick = np.random.default_rng(cfg.seed).permutation(len(train[0]))[: p.bn_images]
        recalibrate_bn(small, train[0][np.sort(pick)], size, meta["mean"], meta["std"], device, cfg.eval_batch_size)

    def f1(model: torch.nn.Module) -> float:
        return validate(model.to(device), val, meta, cfg)["val/f1"]

    metrics = {
        "compressed": True,
        "compression": structure.describe(),
        "keep_blocks": structure.keep_blocks or [],
        "split_convs": len(structure.split),
        "channel_ratio": structure.channel_ratio,
        "macs_before": macs,
        "macs": small_macs,
        "macs_reduction": 1 - small_macs / macs,
        "params_before": n_params,
        "params": small_params,
        "f1_before": f1(student),
        "f1_compressed": f1(small),  # after the BatchNorm re-estimate, before fine-tuning
        "bn_images": min(p.bn_images, len(train[0])),
    }
    spec = {k: v for k, v in meta["arch_kwargs"].items() if k == "spec"}  # the network it was built from
    meta_extra = {"arch_kwargs": {**spec, **structure.arch_kwargs}, "compression": structure.describe()}
    return Compressed(small, meta_extra, metrics)


def pass_through(student: Path, out: Path) -> dict[str, int]:
    """Compression off: the student checkpoint copied to `out` unchanged; its {macs, params}."""
    model, meta = load_checkpoint(student)
    macs, n_params = count_macs(model, meta["input_size"])
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(student, out)
    return {"macs": macs, "params": n_params}
