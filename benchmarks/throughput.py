"""Training throughput of tinycls.train.fit against a bare PyTorch loop (images/s).

Same model, batch size, input size, optimizer, CutMix and thread count; the bare loop is the
usual DataLoader(TensorDataset) + forward/backward/step over pre-normalized float tensors, with
timm's Mixup when CutMix is on, and no other augmentation, no metrics and no checkpoint.
Writes the block named after --arch of docs/results/throughput.md.
Run: `python -m benchmarks.throughput` (student) and `python -m benchmarks.throughput --arch
timm:tf_efficientnet_lite0 --size 48 --cutmix-prob 0.5 --images 2560 --repeats 2` (teacher).
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.results import page
from tinycls.checkpoint import checkpoint_meta
from tinycls.device import resolve_device
from tinycls.models import build_model
from tinycls.train import TrainConfig, fit, seed_everything
from tinycls.transforms import IMAGENET_MEAN, IMAGENET_STD, to_input


def bare_loop(
    arch: str, x: np.ndarray, y: np.ndarray, size: int, batch: int, device: torch.device, cutmix_prob: float
) -> float:
    seed_everything(0)
    model = build_model(arch, 10).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1.0e-3)
    mixer = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=cutmix_prob, label_smoothing=0.1, num_classes=10)
    xs = to_input(torch.from_numpy(x), size, IMAGENET_MEAN, IMAGENET_STD)
    loader = DataLoader(TensorDataset(xs, torch.from_numpy(y)), batch_size=batch, shuffle=True, drop_last=True)
    loss_fn = SoftTargetCrossEntropy() if cutmix_prob else torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    start = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        if cutmix_prob:
            xb, yb = mixer(xb, yb)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(x) / (time.perf_counter() - start)


def tinycls_loop(
    arch: str, x: np.ndarray, y: np.ndarray, size: int, batch: int, device: torch.device, cutmix_prob: float
) -> float:
    seed_everything(0)
    model = build_model(arch, 10)
    cfg = TrainConfig(epochs=1, batch_size=batch, device=device.type, label_smoothing=0.1, cutmix_prob=cutmix_prob)
    meta = checkpoint_meta(arch, [str(i) for i in range(10)], size)
    val = (x[:batch], y[:batch])  # the loop always validates once per epoch: keep it small
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fit(model, (x, y), val, cfg, Path(tmp) / "best.pt", meta, progress=True)
        return len(x) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", default="pytorchcv:shufflenet_g3_wd4")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--images", type=int, default=128 * 60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cutmix-prob", type=float, default=0.0)
    args = ap.parse_args()
    device = resolve_device(args.device)
    with page("throughput", args.arch, title="training throughput") as emit:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
        y = rng.integers(0, 10, args.images).astype(np.int64)
        run = (args.arch, x, y, args.size, args.batch, device, args.cutmix_prob)
        bare_loop(args.arch, x[: args.batch * 4], y[: args.batch * 4], *run[3:])  # warm-up
        bare, ours = [], []
        for _ in range(args.repeats):  # interleaved, best of n: the machine's noise hits both alike
            bare.append(bare_loop(*run))
            ours.append(tinycls_loop(*run))
        b, o = max(bare), max(ours)
        model = (
            f"{args.arch}, {args.size} px, batch {args.batch}, CutMix prob {args.cutmix_prob}, on {device.type}, "
            f"{torch.get_num_threads()} threads"
        )
        emit(
            "| model | fit (images/s) | bare loop (images/s) | fit / bare |\n|---|---:|---:|---:|\n"
            f"| {model} | {o:,.0f} | {b:,.0f} | {o / b:.1%} |"
        )
        emit(
            f"ratio: {o / b:.1%} (goal >= 85%); tinycls fit includes augmentation, progress bar, one validation, "
            "checkpoint"
        )


if __name__ == "__main__":
    main()
