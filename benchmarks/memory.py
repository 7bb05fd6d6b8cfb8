"""Peak memory of `prepare` and of a student epoch against dataset size: the cache on disk
(tinycls.rows) against the in-memory cache of an earlier commit, side by side.

For each size N, a dataset of N train images in 10 classes (64 x 64 PNGs of a class colour with
noise; 1,000 test images) is written once under --root; then, in a scratch folder per code
version, `python -m stages.prepare` (image_size 64, max_per_class 0, 2 workers) and one epoch of
the quick start's student (params.yaml [student]: ShuffleNet, 32 px input, batch 128) on the
train split with val for selection run as separate processes. Peak RSS is the largest sum of
the resident memory of the process and its children, sampled every 50 ms (psutil); the page
cache that holds the files is the kernel's, shared and evictable, and not counted.

Run: `python -m benchmarks.memory --base <rev>` (minutes per size; 200k images need ~6 GB disk
under --root and, for the in-memory base, ~6 GB RAM). `--readers` instead compares the two ways
to read a cache on disk, a memory map (`np.load(mmap_mode="r")`) and tinycls.rows (`os.pread`):
one shuffled pass in batches of 128 over a 1.2 GB .npy of 100,000 64 px rows, each in its own
process, twice, with its peak RSS (sampled as above). Writes the table as the block of
docs/results/memory.md named after --sizes (`sizes 10000,50000,200000`), or with --readers the
passes as the block `readers`.
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
import psutil
import yaml
from PIL import Image

from benchmarks.results import page

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10
TEST = 1000

EPOCH = """
import json, sys, time
from pathlib import Path
import yaml
from stages.training import split_section
from tinycls.pseudo import DataConfig
from tinycls.checkpoint import checkpoint_meta
from tinycls.models import build_model
from tinycls.cache import load_classes, load_split
from tinycls.train import fit, seed_everything
cache = Path("artifacts/prepare")
student = yaml.safe_load(Path("params.yaml").read_text())["student"]
m, cfg, _ = split_section("student", {**student, "epochs": 1}, [(DataConfig, ("train_on", "allow_unmatched_init"))])
classes = load_classes(cache)
train, val = load_split(cache, "train"), load_split(cache, "val")
seed_everything(0)
model = build_model(m.arch, len(classes))
start = time.perf_counter()
r = fit(model, train, val, cfg, Path("best.pt"), checkpoint_meta(m.arch, classes, m.input_size), progress=False)
print(json.dumps({"seconds": time.perf_counter() - start, "images": len(train[0]), "val_f1": r.best_f1}))
"""


def _write_class(args: tuple[Path, int, int, int]) -> None:
    folder, label, first, n = args
    rng = np.random.default_rng(label * 1_000_003 + first)
    colour = np.array([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256], dtype=np.float64)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + n):
        pixels = np.clip(colour + rng.normal(0, 40, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png", compress_level=1)


def make_dataset(root: Path, n: int) -> Path:
    """root/mem<n>/{train/<class>,test}/: n train images in 10 classes, 1,000 unlabelled test."""
    from concurrent.futures import ProcessPoolExecutor

    data = root / f"mem{n}"
    done = data / ".complete"
    if done.exists():
        return data
    per = n // CLASSES
    jobs = [(data / "train" / f"c{c}", c, s, min(5000, per - s)) for c in range(CLASSES) for s in range(0, per, 5000)]
    jobs += [(data / "test", c, 10_000_000 + c * 1000, TEST // CLASSES) for c in range(CLASSES)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_class, jobs))
    done.write_text("")
    return data


def peak_rss(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """(peak RSS of the process tree in MB, seconds, stdout) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return peak / 1e6, time.perf_counter() - start, out


def measure(code: Path, data: Path, scratch: Path) -> dict:
    """prepare and one student epoch with the code at `code`, on `data`."""
    work = scratch / code.name
    work.mkdir(parents=True)
    (work / "data").mkdir()
    (work / "data" / data.name).symlink_to(data)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"].update(dataset=data.name, image_size=64, max_per_class=0, workers=2)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": f"{code / 'src'}:{code}"}
    prep_mb, prep_s, _ = peak_rss([sys.executable, "-m", "stages.prepare"], work, env)
    epoch_mb, _, out = peak_rss([sys.executable, "-c", EPOCH], work, env)
    epoch = json.loads(out.strip().splitlines()[-1])
    return {
        "prepare_mb": prep_mb,
        "prepare_s": prep_s,
        "epoch_mb": epoch_mb,
        "epoch_img_s": epoch["images"] / epoch["seconds"],
        "val_f1": epoch["val_f1"],
    }


READER = """
import sys, time
import numpy as np
from tinycls.rows import Rows
path, how = sys.argv[1], sys.argv[2]
x = np.load(path, mmap_mode="r") if how == "mmap" else Rows([path])
order = np.random.default_rng(0).permutation(len(x))
start = time.perf_counter()
for i in range(0, len(order), 128):
    x[order[i : i + 128]].sum()
seconds = time.perf_counter() - start
print(f"{seconds:.2f}")
"""


def readers(root: Path) -> list[str]:
    """A memory map against os.pread: the time of a shuffled pass and the process's peak RSS, a line
    per pass."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "readers.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (100_000, 64, 64, 3), dtype=np.uint8))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    lines = []
    try:
        for how in ("mmap", "pread", "mmap", "pread"):
            mb, _, out = peak_rss([sys.executable, "-c", READER, str(path), how], root, env)
            lines.append(f"{how}: a shuffled pass over 100,000 rows (1.2 GB) in {out.strip()} s, peak RSS {mb:,.0f} MB")
    finally:
        path.unlink()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,50000,200000")
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "tinycls-memory")
    ap.add_argument("--base", help="an earlier commit to measure beside this tree (its in-memory cache)")
    ap.add_argument("--readers", action="store_true", help="only compare a memory map with os.pread")
    args = ap.parse_args()
    if args.readers:
        with page("memory", "readers", title="peak memory against dataset size") as emit:
            emit("\n".join(f"- {line}" for line in readers(args.root)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    versions = {"this tree": ROOT}
    with page("memory", f"sizes {args.sizes}", title="peak memory against dataset size") as emit:
        with tempfile.TemporaryDirectory(dir=args.root.parent if args.root.parent.exists() else None) as tmp:
            if args.base:
                base = Path(tmp) / "base"
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), args.base],
                               check=True)  # fmt: skip
                versions[f"base {args.base}"] = base
            try:
                rows = []
                for n in sizes:
                    data = make_dataset(args.root, n)
                    for name, code in versions.items():
                        with tempfile.TemporaryDirectory(dir=args.root) as scratch:
                            r = measure(code, data, Path(scratch))
                        rows.append((n, name, r))
                        print(f"{n:>7,} {name}: {json.dumps({k: round(v, 4) for k, v in r.items()})}", flush=True)
            finally:
                if args.base:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
        table = [
            "| labelled images | cache | code | prepare peak RSS | prepare s | student epoch peak RSS | epoch img/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, name, r in rows:
            gb = n * 64 * 64 * 3 / 1e9
            table.append(f"| {n:,} | {gb:.2f} GB | {name} | {r['prepare_mb']:,.0f} MB | {r['prepare_s']:.0f} | "
                         f"{r['epoch_mb']:,.0f} MB | {r['epoch_img_s']:,.0f} |")  # fmt: skip
        emit("\n".join(table))


if __name__ == "__main__":
    main()
