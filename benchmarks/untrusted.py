"""What files a user passes in can cost: crafted model files refused, and `tinycls predict` over a
large folder, each as the `tinycls predict` command a user runs, timed, with its peak RSS.

1. Crafted files of a few KB, each must be refused with one line: a checkpoint recording 64
   convs of 1024 channels and 15x15 kernels (60 GB of weights if built), one recording a
   BatchNorm of 10**10 features (40 GB), an ONNX export given a 40 GB ConstantOfShape, and one
   whose metadata says std [0, 0, 0] (nan confidences).
2. `tinycls predict` of the quick start's student network (params.yaml [student], random
   weights: time and memory do not depend on their values) over --images images: Fashion-MNIST's
   PNGs under data/fashion_mnist, hard-linked into one folder as many times as it takes; with
   --base REV, the same command of that commit (a git worktree) side by side.

Run after `make data`: `python -m benchmarks.untrusted [--images 100000] [--base REV]`. Writes
docs/results/untrusted.md.
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
import onnx
import onnx.numpy_helper
import torch
import yaml

from benchmarks.results import page
from tinycls.checkpoint import checkpoint_meta, save_checkpoint
from tinycls.export import export_onnx
from tinycls.models import arch_kwargs, build_model
from tinycls.onnx_runtime import METADATA_KEY

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [f"c{i}" for i in range(10)]


# the measured command runs under this small process: a child forked from the benchmark itself would
# report the benchmark's own RSS (ru_maxrss carries over a fork and exec) when that is the larger
WRAPPER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def command(args: list[str], cwd: Path, src: Path = ROOT / "src") -> tuple[int, float, float, str]:
    """(exit status, seconds, peak RSS in MB, last line of stderr) of `python -m tinycls.cli ARGS`
    (of `python ARGS` when ARGS starts with -c)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, *([] if args[0] == "-c" else ["-m", "tinycls.cli"]), *args]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    last = (r.stderr.strip().splitlines() or [""])[-1].replace(f"{cwd}/", "")
    return r.returncode, seconds, int(r.stdout.split()[-1]) / 1024, last


def crafted(tmp: Path) -> dict[str, Path]:
    """The crafted files, each a few KB."""
    meta = checkpoint_meta("pytorchcv:shufflenet_g3_wd4", CLASSES, 16, cache_size=16)
    files = {}
    spec = {"backbone": [[1, "Conv", [1024, 15]]] * 64, "head": 8}
    bn = {"features.init_block.bn": [10**10]}
    for name, change in (
        ("checkpoint: 64 convs of 1024 channels, 15x15", {"arch": "nas:crafted", "arch_kwargs": {"spec": spec}}),
        ("checkpoint: a BatchNorm of 10**10 features", {"arch_kwargs": {"layers": bn}}),
    ):
        files[name] = tmp / f"crafted{len(files)}.pt"
        torch.save({**meta, **change, "state_dict": {"w": torch.zeros(2)}}, files[name])
    real = build_model(meta["arch"], len(CLASSES)).eval()
    save_checkpoint(tmp / "real.pt", real, meta)
    export_onnx(real, meta, tmp / "real.onnx")
    for name, how in (("ONNX: a 40 GB ConstantOfShape", "huge"), ("ONNX: metadata std [0, 0, 0]", "std")):
        proto = onnx.load(str(tmp / "real.onnx"))
        entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
        if how == "std":
            entry.value = json.dumps({**json.loads(entry.value), "std": [0, 0, 0]})
        else:
            shape = np.array([1, 10**5, 10**5], np.int64)
            proto.graph.initializer.append(onnx.numpy_helper.from_array(shape, "huge_shape"))
            proto.graph.node.append(onnx.helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"]))
            proto.graph.output.append(onnx.helper.make_tensor_value_info("huge", onnx.TensorProto.FLOAT, None))
        files[name] = tmp / f"crafted{len(files)}.onnx"
        files[name].write_bytes(proto.SerializeToString())
    return files


def folder(tmp: Path, n: int) -> Path:
    """n images: Fashion-MNIST's PNGs hard-linked (a copy where links are refused) in turn."""
    source = sorted((ROOT / "data" / "fashion_mnist").rglob("*.png"))
    if not source:
        sys.exit("no PNGs under data/fashion_mnist: run `make data` first")
    for path in source:  # read once, so that no timed run pays for a cold page cache
        path.read_bytes()
    out = tmp / "images"
    for i in range(n):
        sub = out / f"{i // 10_000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source[i % len(source)], sub / f"{i}.png")
        except OSError:
            (sub / f"{i}.png").write_bytes(source[i % len(source)].read_bytes())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--base", help="a commit to run the same predict command of, side by side")
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    arch, size, side = params["student"]["arch"], params["student"]["input_size"], params["prepare"]["image_size"]
    with tempfile.TemporaryDirectory() as t, page("untrusted", title="files from elsewhere") as emit:
        tmp = Path(t)
        emit("| crafted file | bytes | exit | seconds | peak RSS | message |\n|---|---:|---:|---:|---:|---|")
        (tmp / "one").mkdir()
        (tmp / "one" / "0.png").write_bytes(next((ROOT / "data" / "fashion_mnist").rglob("*.png")).read_bytes())
        model = build_model(arch, len(CLASSES), **arch_kwargs(arch)).eval()
        meta = checkpoint_meta(arch, CLASSES, size, arch_kwargs(arch), cache_size=side)
        save_checkpoint(tmp / "student.pt", model, meta)
        export_onnx(model, meta, tmp / "student.onnx")
        # the floor: the same command on real files (most of it is importing the CUDA build of torch)
        real = {f"real: the student, {arch}": tmp / "student.pt", "real: ShuffleNetV1 x0.25": tmp / "real.pt",
                "real: the student's ONNX export": tmp / "student.onnx"}  # fmt: skip
        rc, s, rss, _ = command(["-c", "import torch"], tmp)
        emit(f"| the floor: `python -c 'import torch'` (the CUDA build) | | {rc} | {s:.1f} | {rss:.0f} MB | |")
        for name, path in {**crafted(tmp), **real}.items():
            rc, s, rss, line = command(["predict", str(path), "one", "--out", "p.csv"], tmp)
            assert (rc == 0) == name.startswith("real") and "Traceback" not in line, line
            shown = line[:110] + ("..." if len(line) > 110 else "")
            emit(f"| {name} | {path.stat().st_size:,} | {rc} | {s:.1f} | {rss:.0f} MB | {shown} |")
        images = folder(tmp, args.images)
        runs = [("this commit", ROOT / "src", "student.pt"), ("this commit", ROOT / "src", "student.onnx")]
        if args.base:
            base = tmp / "base"
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base), args.base], cwd=ROOT, check=True)
            runs.append((f"{args.base} (base)", base / "src", "student.pt"))
        emit(f"\n`tinycls predict` over {args.images:,} Fashion-MNIST PNGs, {arch} at {size} px (cache side {side}):\n")
        emit("| code | model file | exit | seconds | images/s | peak RSS |\n|---|---|---:|---:|---:|---:|")
        try:
            for code, src, name in runs:
                rc, s, rss, line = command(["predict", name, str(images), "--out", "p.csv"], tmp, src)
                rows = sum(1 for _ in open(tmp / "p.csv")) - 1 if rc == 0 else 0
                assert rc != 0 or rows == args.images, (rows, line)
                emit(f"| {code} | {name} | {rc} | {s:.0f} | {args.images / s:,.0f} | {rss:,.0f} MB |")
                (tmp / "p.csv").unlink(missing_ok=True)
        finally:
            if args.base:
                subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
