"""The plain baselines a user would try first on the quick start, measured beside the pipeline:
an MLP 256-128-64 on the grayscale 28 px image (Fashion-MNIST's own benchmark anchor, ~0.24M
MACs) and a small 2-conv CNN, trained with a bare PyTorch loop (AdamW, one-cycle, batch 128,
no augmentation) on the same train + val images the student trains on, scored on test.

Run from the repository root after `make run` (it reads artifacts/prepare and the held-out
labels, and metrics/score.json for the pipeline's row): `python -m benchmarks.anchors`.
`--root DIR`: the same on another checkout's prepared data, e.g. the photos benchmark's clone
(`--root /tmp/photos/tinycls`), whose pipeline row is then its last `dvc repro`. Writes the table
as its block of docs/results/anchors.md (with --root, the block `root DIR`).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from benchmarks.results import page
from stages.params import CACHE, HELD_OUT
from tinycls.cache import load_classes, load_held_out, load_split
from tinycls.macs import count_macs
from tinycls.train import seed_everything

SIZE = 28  # Fashion-MNIST's own side


def gray(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float (N, 1, 28, 28) in [-1, 1]."""
    x = torch.from_numpy(np.asarray(images)).float().mean(-1, keepdim=True).permute(0, 3, 1, 2) / 127.5 - 1
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True)


class GrayInput(nn.Module):
    """Counts a 1-channel model under count_macs' 3-channel input: the channel mean is an
    element-wise op, which the competition's rules do not count."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.mean(1, keepdim=True))


def mlp(classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(SIZE * SIZE, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, classes),
    )


def cnn(classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 14 px
        nn.Conv2d(8, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 7 px
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, classes),
    )


def train_and_score(name: str, model: nn.Module, train, test, epochs: int = 10) -> dict:
    seed_everything(0)
    x, y = train
    opt = torch.optim.AdamW(model.parameters(), lr=2.0e-3, weight_decay=5.0e-4)
    steps = epochs * (len(x) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2.0e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // 128):
            idx = order[i * 128 : (i + 1) * 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(test[0][i : i + 1000]).argmax(1) for i in range(0, len(test[0]), 1000)]).numpy()
    macs, params = count_macs(GrayInput(model), SIZE)
    return {
        "name": name,
        "macs": macs,
        "params": params,
        "accuracy": accuracy_score(test[1], pred),
        "f1": f1_score(test[1], pred, average="macro"),
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."), help="the checkout whose prepared data to use")
    root = ap.parse_args().root
    torch.set_num_threads(2)
    block = "" if root == Path(".") else f"root {root}"
    with page("anchors", block, title="plain baselines beside the pipeline") as emit:
        cache = root / CACHE
        (xt, yt), (xv, yv) = load_split(cache, "train"), load_split(cache, "val")
        train = (gray(np.concatenate([xt, xv])), torch.from_numpy(np.concatenate([yt, yv])))
        test = (gray(load_split(cache, "test")[0]), load_held_out(root / HELD_OUT)[1])
        classes = len(load_classes(cache))
        rows = [train_and_score("MLP 256-128-64, 28 px gray", mlp(classes), train, test)]
        rows.append(train_and_score("2-conv CNN (8, 16 ch, 5x5), 28 px gray", cnn(classes), train, test))
        score = json.loads((root / "metrics/score.json").read_text())
        table = [
            "| model | MACs | params | test accuracy | test macro F1 | train s (10 epochs) |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            table.append(
                f"| {r['name']} | {r['macs']:,} | {r['params']:,} | {r['accuracy']:.4f} | {r['f1']:.4f} "
                f"| {r['seconds']:.0f} |"
            )
        if "student_macs" in score:  # a score.json older than the student_* keys has the final model only
            table.append(
                f"| pipeline student ({score['arch']}, {score['input_size']} px) | {score['student_macs']:,} "
                f"| {score['student_params']:,} | | {score['student_f1']:.4f} | |"
            )
        table.append(
            f"| pipeline final model ({score.get('compression', 'none')}) | {score['macs']:,} | {score['params']:,} "
            f"| {score['accuracy']:.4f} | {score['f1']:.4f} | |"
        )
        emit("\n".join(table))


if __name__ == "__main__":
    main()
