"""The one training loop every stage uses: optimizer, schedule, AMP, seeding, progress bar,
per-epoch logging, best checkpoint by validation macro F1, a usable checkpoint on Ctrl-C, and a
resume state after every epoch that an interrupted fit continues from, to the same result.
The settings are tinycls.train_config, the training state and one epoch tinycls.loop, the resume
state tinycls.resume.
"""

import copy
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tinycls import distributed
from tinycls.checkpoint import save_checkpoint
from tinycls.device import resolve_device
from tinycls.distill import Distiller
from tinycls.loop import Criterion, FitResult, Loop
from tinycls.predict import predict_checkpoint
from tinycls.resume import ResumeState, fingerprint, save_interrupted
from tinycls.score import macro_f1
from tinycls.train_config import OPTIMIZERS, SCHEDULES, TrainConfig

__all__ = ["OPTIMIZERS", "SCHEDULES", "Criterion", "FitResult", "TrainConfig", "fit", "seed_everything", "validate"]


def seed_everything(seed: int) -> None:
    """Same seed and machine -> same weights, batches and metrics."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def validate(model: nn.Module, val: tuple[np.ndarray, np.ndarray], meta: dict[str, Any], cfg: TrainConfig) -> dict:
    """{'val/loss', 'val/f1'} of `model` (on cfg's device) on val, prepared as `meta` records."""
    logits = predict_checkpoint(model, meta, val[0], resolve_device(cfg.device), cfg.eval_batch_size)
    val_y = torch.from_numpy(val[1])
    return {
        "val/loss": nn.functional.cross_entropy(logits, val_y).item(),
        "val/f1": macro_f1(val_y.numpy(), logits.argmax(1).numpy(), len(meta["classes"])),
    }


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    checkpoint: Path,
    meta: dict[str, Any],
    distiller: Distiller | None = None,
    criterion: Criterion | None = None,
    log: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
    resume: Path | None = None,
) -> FitResult:
    """Train `model`; keep the checkpoint with the best validation macro F1.

    Args:
        model: built (and seeded) by the caller.
        train: (uint8 images (N, S, S, 3), int64 labels (N,) or float class probabilities
            (N, K), e.g. soft pseudo labels).
        val: (uint8 images, int64 labels (N,)) for model selection.
        cfg: loop settings.
        checkpoint: where the best checkpoint goes; `<stem>.last.pt` beside it on Ctrl-C.
        meta: plain-typed checkpoint fields (arch, arch_kwargs, classes, input_size, mean, std).
        distiller: the teachers and kd settings (tinycls.distill.create_distiller); None trains
            on cfg.loss alone. The teachers see each training batch exactly as the student does;
            their outputs are computed once and reused every epoch when no augmentation is
            random, for each of kd.views fixed views (teacher_outputs views: the student trains
            on those views), or for the unaugmented image (cached). Label smoothing applies to cfg.loss `ce`,
            and to every loss through the CutMix targets.
        criterion: overrides the loss: criterion(logits, targets, inputs); targets are class
            probabilities (B, K) when CutMix or soft labels are on.
        log: called once per epoch with {'train/loss', 'val/loss', 'val/f1', 'lr'}.
        progress: show a tqdm bar with live loss and F1.
        resume: a file for the full training state (model, optimizer, schedule, AMP scaler, EMA,
            every RNG, best-so-far and the logged rows), written after every epoch. A fit of the
            same model, data and settings finding it there continues after its last epoch, with
            the same result as an uninterrupted fit; one of another fit is ignored. The caller
            removes it when done.

    Raises:
        ValueError: CutMix asked for with soft labels (it needs class indices), or cached
            teacher outputs with CutMix.
        KeyboardInterrupt: re-raised after the current weights are saved.
    """
    device = distributed.setup(resolve_device(cfg.device))  # this rank's, under torchrun
    main, progress = distributed.primary(), progress and distributed.primary()  # only rank 0 writes
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device, memory_format=layout)
    if distiller is not None:
        distiller.teachers.to(device, memory_format=layout)
    loop = Loop(model, cfg, meta, train, distiller, criterion, device)
    evaluated = loop.ema.module if loop.ema else model  # what is validated and saved
    best = FitResult(best_f1=-1.0, best_epoch=0, epochs_run=0, device=device.type, teacher_outputs=loop.teach.outputs)
    saved = ResumeState(resume, fingerprint(model, train, val, cfg, meta, distiller)) if resume else None
    rows: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    # rank 0 decides (its fingerprint), the others read the same file: every rank resumes, or none
    state = saved.load() if saved is not None and main else None
    if distributed.broadcast(state is not None) and state is None:
        state = saved.read()
    if saved is not None and state is not None:
        best, best_state, rows = saved.restore(loop, state)
        if best_state is not None and main:  # the stage's outputs were removed (dvc repro does): write it again
            kept = copy.deepcopy(evaluated)
            kept.load_state_dict(best_state)
            save_checkpoint(checkpoint, kept, {**meta, "epoch": best.best_epoch, "val_f1": best.best_f1})
        for row in rows:
            if log and main:
                log(row)
        if main:
            print(f"resuming after epoch {best.epochs_run} of {cfg.epochs} from {resume}")
    try:
        for epoch in range(best.epochs_run + 1, cfg.epochs + 1):
            bar = tqdm(range(loop.steps), desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=True,
                       dynamic_ncols=True, mininterval=0.5)  # fmt: skip
            row = {"train/loss": loop.epoch(epoch, bar, best.best_f1)}
            if not cfg.sync_bn:  # each rank's running statistics saw its own share
                distributed.average_bn(model, loop.ema.module if loop.ema else None)
            # rank 0 validates (the others wait for its row): the same choices of best epoch everywhere
            row = distributed.broadcast({**row, **validate(evaluated, val, meta, cfg)} if main else None)
            row["lr"] = loop.opt.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{row['train/loss']:.4f}", val_f1=f"{row['val/f1']:.4f}")
            bar.close()
            best.epochs_run = epoch
            if row["val/f1"] > best.best_f1:
                best.best_f1, best.best_epoch = row["val/f1"], epoch
                if main:
                    save_checkpoint(checkpoint, evaluated, {**meta, "epoch": epoch, "val_f1": row["val/f1"]})
                if saved is not None:
                    best_state = {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}
            if log and main:
                log(row)
            rows.append(row)
            if saved is not None and main:
                saved.save(loop, best, best_state, rows)
    except KeyboardInterrupt:
        if main:
            save_interrupted(checkpoint, model, meta, best.epochs_run)
        raise
    distributed.check_identical(model)
    if main:
        checkpoint.with_name(checkpoint.stem + ".last.pt").unlink(missing_ok=True)  # an interrupted run's, superseded
    return best
