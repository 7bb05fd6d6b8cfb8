"""Resuming a fit: the full training state (model, optimizer, schedule, AMP scaler, EMA, every RNG,
best-so-far and the logged rows) saved after every epoch under a fingerprint of the fit, read back
only by a fit of the same model, data, settings, code, libraries and device; and the weights kept
on Ctrl-C.
"""

import hashlib
import json
import os
import platform
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinycls.checkpoint import save_checkpoint
from tinycls.distill import Distiller
from tinycls.loop import FitResult, Loop
from tinycls.train_config import TrainConfig


@dataclass(frozen=True)
class ResumeState:
    """The resume file of one fit: `path`, and `key`, the fit's fingerprint (part -> hash)."""

    path: Path
    key: dict[str, str]

    def save(
        self,
        loop: Loop,
        best: FitResult,
        best_state: dict[str, torch.Tensor] | None,
        rows: list[dict[str, float]],
    ) -> None:
        """Everything the next epoch depends on, atomically, in plain types (weights_only loads it)."""
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "fingerprint": self.key,
            "model": loop.model.state_dict(),
            "ema": loop.ema.state_dict() if loop.ema else None,
            "opt": loop.opt.state_dict(),
            "sched": loop.sched.state_dict(),
            "scaler": loop.scaler.state_dict(),
            "gen": loop.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if loop.device.type == "cuda" else [],
            "numpy_rng": [kind, keys.tolist(), pos, has_gauss, cached],  # timm's CutMix draws from it
            "python_rng": random.getstate(),
            "best": asdict(best),
            "best_state": best_state,
            "rows": rows,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def read(self) -> dict[str, Any]:
        """The state at `path`, unchecked (another rank of this fit checked it)."""
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def load(self) -> dict[str, Any] | None:
        """The resume state at `path` when it belongs to this fit, else None (and why, printed)."""
        if not self.path.is_file():
            return None
        try:
            state = self.read()
        except Exception as e:  # a half-written or foreign file: start over rather than fail
            print(f"{self.path}: not a readable resume state ({type(e).__name__}); starting from epoch 1")
            return None
        saved = state.get("fingerprint") if isinstance(state, dict) else None
        if saved != self.key:
            parts = saved if isinstance(saved, dict) else {}
            changed = [PARTS[k] for k in PARTS if parts.get(k) != self.key.get(k)]
            print(f"{self.path}: saved by a fit with other {', '.join(changed)}; starting from epoch 1")
            return None
        return state

    @staticmethod
    def restore(loop: Loop, state: dict[str, Any]) -> tuple[FitResult, dict[str, torch.Tensor] | None, list[dict]]:
        """Put a saved state back; returns (best so far, its weights, the rows logged so far)."""
        loop.model.load_state_dict(state["model"])
        if loop.ema:
            loop.ema.load_state_dict(state["ema"])
        loop.opt.load_state_dict(state["opt"])
        loop.sched.load_state_dict(state["sched"])
        loop.scaler.load_state_dict(state["scaler"])
        loop.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        kind, keys, pos, has_gauss, cached = state["numpy_rng"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
        return FitResult(**state["best"]), state["best_state"], state["rows"]


# the parts of a fingerprint, as a stale state's message names them
PARTS = {
    "fit": "settings, data, initial weights or teachers",
    "code": "code (tinycls or the stage)",
    "libraries": "library versions",
    "device": "device",
}


def fingerprint(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    meta: dict[str, Any],
    distiller: Distiller | None,
) -> dict[str, str]:
    """What makes a fit this fit, part by part (PARTS): a resume state saved under any other
    fingerprint is stale. Epochs trained by other code, libraries or another device would not be
    the epochs this run would train."""
    h = hashlib.sha256(json.dumps([asdict(cfg), meta], sort_keys=True, default=str).encode())
    for a in (*train, *val):
        h.update(f"{a.shape}{a.dtype}".encode())
        for i in range(0, len(a), 4096):  # a cache on disk is read a chunk at a time
            h.update(np.ascontiguousarray(a[i : i + 4096]).data)
    tensors = list(model.state_dict().values())
    if distiller is not None:
        h.update(repr(distiller.kd).encode())
        tensors += list(distiller.teachers.state_dict().values())
    for v in tensors:
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"fit": h.hexdigest(), "code": _code(), **_platform(model)}


def _code() -> str:
    """The source of every module of tinycls and of the stages loaded in this process (the running
    stage's import closure, lazy imports included), by file name and content: not by where the
    checkout is, so another clone of the same commit resumes."""
    roots = [
        Path(m.__file__).resolve().parent for n in ("tinycls", "stages") if (m := sys.modules.get(n)) and m.__file__
    ]
    loaded = {Path(f).resolve() for m in list(sys.modules.values()) if (f := getattr(m, "__file__", None))}
    h = hashlib.sha256()
    for f in sorted(f for f in loaded if f.suffix == ".py" and any(f.is_relative_to(r) for r in roots)):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _platform(model: nn.Module) -> dict[str, str]:
    """Library versions and the device the model is on (a GPU by its name)."""
    import importlib.metadata as md

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in ("timm", "pytorchcv"):
        if name in sys.modules:
            versions[name] = md.version(name)
    device = next(iter(model.parameters()), torch.empty(0)).device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    return {"libraries": json.dumps(versions, sort_keys=True), "device": f"{device.type}:{where}"}


def save_interrupted(checkpoint: Path, model: nn.Module, meta: dict[str, Any], epochs_run: int) -> None:
    """On Ctrl-C: the current weights to `<stem>.last.pt`, and to `checkpoint` when no epoch has
    been saved there yet, so an interrupted run always leaves a usable model."""
    last = checkpoint.with_name(checkpoint.stem + ".last.pt")
    save_checkpoint(last, model, {**meta, "epoch": epochs_run, "val_f1": None})
    if not checkpoint.exists():
        save_checkpoint(checkpoint, model, {**meta, "epoch": epochs_run, "val_f1": None})
    print(f"\ninterrupted: current weights in {last}, best so far in {checkpoint}")
