"""Teacher candidates on the prepared quick start: each is params.yaml's [teacher] with a few
keys changed, trained through the teacher stage's own code path (stages.teacher.train_teacher),
then scored on the test split with the held-out labels (flip TTA, as the pseudo stage does).

Run from the repository root after `make run` (it reads artifacts/prepare):
`python -m benchmarks.teacher` (every candidate, ~15 min on 2 cores) or
`python -m benchmarks.teacher --only lite0-48-2ep,tf-lite0-48-2ep`. Writes a Markdown table as the
block of docs/results/teacher.md named after --only (`candidates lite0-48-2ep,tf-lite0-48-2ep`;
`candidates all` without it).
"""

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.results import page
from stages.params import CACHE, HELD_OUT, section
from stages.teacher import train_teacher
from tinycls.cache import load_classes, load_held_out, load_split
from tinycls.checkpoint import load_checkpoint
from tinycls.device import resolve_device
from tinycls.pseudo import teacher_probs
from tinycls.score import macro_f1

IMAGENET = {"pretrained": True, "weights": "package:efficientnet_lite0", "lr": 1.0e-3}
SCRATCH = {"pretrained": False, "weights": ""}
# name -> changes to params.yaml [teacher] (plus max_per_class: training images per class).
CANDIDATES: dict[str, dict] = {
    # d3912fb's teacher: EfficientNetV2-B0 from scratch
    "v2b0-32-scratch-3ep": {
        "arch": "timm:tf_efficientnetv2_b0",
        **SCRATCH,
        "input_size": 32,
        "epochs": 3,
        "lr": 3.0e-3,
        "max_per_class": 0,
    },
    # the packaged weights: TF "same" padding (tf_) or not
    "lite0-48-2ep": {
        "arch": "timm:efficientnet_lite0",
        **IMAGENET,
        "input_size": 48,
        "epochs": 2,
        "max_per_class": 1000,
    },
    "tf-lite0-48-2ep": {
        "arch": "timm:tf_efficientnet_lite0",
        **IMAGENET,
        "input_size": 48,
        "epochs": 2,
        "max_per_class": 1000,
    },
    # more steps, a larger input, from scratch (do the weights matter?)
    "tf-lite0-48-4ep": {
        "arch": "timm:tf_efficientnet_lite0",
        **IMAGENET,
        "input_size": 48,
        "epochs": 4,
        "lr": 2.0e-3,
        "max_per_class": 1000,
    },
    "tf-lite0-64-3ep": {
        "arch": "timm:tf_efficientnet_lite0",
        **IMAGENET,
        "input_size": 64,
        "epochs": 3,
        "lr": 2.0e-3,
        "max_per_class": 1000,
    },
    # patience and data for a teacher worth distilling from (issue 26): twice the epochs, or every image
    "tf-lite0-48-8ep": {
        "arch": "timm:tf_efficientnet_lite0",
        **IMAGENET,
        "input_size": 48,
        "epochs": 8,
        "lr": 2.0e-3,
        "max_per_class": 1000,
    },
    "tf-lite0-48-all-4ep": {
        "arch": "timm:tf_efficientnet_lite0",
        **IMAGENET,
        "input_size": 48,
        "epochs": 4,
        "lr": 2.0e-3,
        "max_per_class": 0,
    },
    "tf-lite0-48-4ep-scratch": {
        "arch": "timm:tf_efficientnet_lite0",
        **SCRATCH,
        "input_size": 48,
        "epochs": 4,
        "lr": 3.0e-3,
        "max_per_class": 1000,
    },
}


def run(name: str, changes: dict, test: tuple, classes: list[str], out: Path) -> dict:
    params = {**section("teacher"), **changes}
    start = time.perf_counter()
    metrics = train_teacher(params, out / f"{name}.pt", out / name, None)
    seconds = time.perf_counter() - start
    model, meta = load_checkpoint(out / f"{name}.pt")
    device = resolve_device(params["device"])
    probs = teacher_probs(model.to(device), meta, test[0], device, True, params["eval_batch_size"])
    return {
        "name": name,
        "arch": params["arch"],
        "imagenet": params["pretrained"],
        "size": params["input_size"],
        "epochs": params["epochs"],
        "images": metrics["train_images"],
        "val_f1": metrics["val_f1"],
        "test_f1": macro_f1(test[1], probs.argmax(1), len(classes)),
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; candidates: {', '.join(CANDIDATES)}")
    block = f"candidates {','.join(names) if args.only else 'all'}"
    with page("teacher", block, title="teacher candidates") as emit:
        classes = load_classes(CACHE)
        test_images, _ = load_split(CACHE, "test")
        _, test_labels = load_held_out(HELD_OUT)
        if test_labels is None:
            raise SystemExit(f"{HELD_OUT}: the test split has no labels; the benchmark needs them.")
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                rows.append(r := run(name, CANDIDATES[name], (test_images, test_labels), classes, Path(tmp)))
                print(r, flush=True)
        table = [
            "| candidate | arch | ImageNet | px | epochs | train images | val F1 | test F1 | train s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            table.append(
                f"| {r['name']} | {r['arch']} | {'yes' if r['imagenet'] else 'no'} | {r['size']} | {r['epochs']} "
                f"| {r['images']:,} | {r['val_f1']:.4f} | {r['test_f1']:.4f} | {r['seconds']:.0f} |"
            )
        emit("\n".join(table))


if __name__ == "__main__":
    main()
