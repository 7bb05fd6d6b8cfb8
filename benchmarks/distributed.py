"""Training on N torchrun processes against one, at the same global batch (tinycls.train.fit on
the prepared quick-start cache): the weights after training (max |difference|), val macro F1
and wall time. On a CPU this checks correctness, not speed: 2 gloo processes share the same
cores one process already uses. With GPUs, --processes N gives images per second for 1 and N.

Run after `make run` (it reads artifacts/prepare), two blocks of docs/results/distributed.md:
`python -m benchmarks.distributed --block short --per-class 39 --batch 130 --epochs 1 --lr 0.01` (3 steps:
float tolerance) and `python -m benchmarks.distributed --block long --per-class 1000 --epochs 3`
(237 steps: float-order noise grown, and wall time).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.results import page
from tinycls import distributed
from tinycls.cache import cap_per_class, load_classes, load_split
from tinycls.checkpoint import checkpoint_meta
from tinycls.models import arch_kwargs, build_model
from tinycls.ranks import cpu_threads
from tinycls.train import TrainConfig, fit, seed_everything

CACHE = Path("artifacts/prepare")


def worker(args: argparse.Namespace, out: Path) -> None:
    """One fit (on every rank under torchrun); rank 0 saves the final weights and its numbers."""
    (x, y), val = load_split(CACHE, "train"), load_split(CACHE, "val")
    keep = cap_per_class(y, args.per_class, 0)
    x, y = x.take(keep), y[keep]
    classes = load_classes(CACHE)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, optimizer=args.optimizer, lr=args.lr,
                      processes=distributed.world(), sync_bn=args.sync_bn, device=args.device)  # fmt: skip
    seed_everything(0)
    kwargs = arch_kwargs(args.arch)
    model = build_model(args.arch, len(classes), **kwargs)
    meta = checkpoint_meta(args.arch, classes, args.size, arch_kwargs=kwargs, cache_size=int(x.shape[1]))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(model, (x, y), (val[0].take(np.arange(2000)), val[1][:2000]), cfg, Path(tmp) / "m.pt", meta,
                     progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    if distributed.primary():
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, out / "weights.pt")
        numbers = {"seconds": seconds, "images": len(x) * args.epochs, "val_f1": result.best_f1}
        (out / "run.json").write_text(json.dumps(numbers))


def launch(args: argparse.Namespace, processes: int, sync_bn: bool, out: Path, threads: int = 0) -> dict:
    """One run through stages.launch (as dvc.yaml's cmd), `threads` per process (0: PyTorch's choice)."""
    out.mkdir(parents=True, exist_ok=True)
    mine = ("worker", "processes", "sync_bn", "block")  # set per run here
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in mine]
    flags += ["--worker", str(out)] + (["--sync-bn"] if sync_bn else [])
    run = [sys.executable, "-m", "stages.launch", str(processes), "benchmarks.distributed"]
    env = {**os.environ, "TINYCLS_BENCH_ARGS": json.dumps(flags)} | (
        {"OMP_NUM_THREADS": str(threads)} if threads else {}
    )
    subprocess.run(run, env=env, check=True)
    return {**json.loads((out / "run.json").read_text()), "weights": torch.load(out / "weights.pt")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="nas:specs/nas.yaml")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--per-class", type=int, default=200, help="training images per class")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128, help="the global batch")
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--device", default="auto")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--block", default="", help="the results block: short (a few steps), long, or another name")
    p.add_argument("--worker", default="")
    argv = json.loads(os.environ.get("TINYCLS_BENCH_ARGS", "null")) or sys.argv[1:]
    args = p.parse_args(argv)
    if args.worker:
        return worker(args, Path(args.worker))
    for split in ("train", "val"):  # into the page cache, so that no run pays the first read
        (CACHE / f"{split}_images.npy").read_bytes()
    cores = cpu_threads()
    share = max(1, cores // args.processes)  # the threads of each of the N processes
    with (
        tempfile.TemporaryDirectory() as tmp,
        page("distributed", args.block, title="training on several processes") as emit,
    ):
        one = launch(args, 1, False, Path(tmp) / "one")
        runs = [("1", "-", f"{share} (float-order floor)", launch(args, 1, False, Path(tmp) / "floor", share))]
        for sync_bn in (True, False):
            many = launch(args, args.processes, sync_bn, Path(tmp) / f"many{sync_bn}")
            runs.append((str(args.processes), str(sync_bn).lower(), f"{share} each", many))
        emit(f"{args.arch} at {args.size} px, {args.per_class} images per class, {args.epochs} epochs, global batch "
             f"{args.batch}, {args.optimizer} lr {args.lr}, device {args.device}. Each row's weights (and BatchNorm "
             f"statistics) against one process on {cores} threads; the floor row changes only the thread "
             "count, hence the order of float sums.")  # fmt: skip
        rows = [f"| 1 | - | {cores} | - | {one['val_f1']:.4f} | {one['seconds']:.1f} | "
                f"{one['images'] / one['seconds']:.0f} |"]  # fmt: skip
        for n, sync, threads, r in runs:
            worst = max((r["weights"][k].double() - w.double()).abs().max().item() for k, w in one["weights"].items())
            rows.append(f"| {n} | {sync} | {threads} | {worst:.2e} | {r['val_f1']:.4f} | {r['seconds']:.1f} | "
                        f"{r['images'] / r['seconds']:.0f} |")  # fmt: skip
        emit("| processes | sync_bn | threads | max abs difference | val macro F1 | seconds | images/s |\n"
             "|---:|---|---|---:|---:|---:|---:|\n" + "\n".join(rows))  # fmt: skip


if __name__ == "__main__":
    main()
