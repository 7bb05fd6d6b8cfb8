"""Issue 12's costs: how soon `dvc repro` stops on a bad param, and what the per-epoch resume
state costs a training run.

1. Params error: `student.batch_size: 0` written into params.yaml of this workspace (restored
   afterwards), then `dvc repro` timed to its non-zero exit; it must stop in the `check` stage
   with the message. Before the check stage a bad value surfaced only when its own stage
   started, after every changed stage before it had trained (`-S teacher.epochs=5 -S
   student.batch_size=0`: after the teacher), and an unknown section was never reported.
2. Resume overhead: what a resume state costs is its save after every epoch and one fingerprint
   of the data and weights per fit, both timed alone for the quick start's student (params.yaml
   [student], on the prepared cache's train split, val for selection) and the save for the
   teacher (EfficientNet-Lite0: weights, AdamW moments, best weights). As a check, the student
   is also fitted without and with a resume file in the order A B B A (machine noise between
   runs is larger than the cost): both must end with the same best F1.

Run after `dvc repro` (it reads artifacts/prepare): `python -m benchmarks.hardening`. Writes each
result line into its block of docs/results/hardening.md.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks.results import page
from stages.params import CACHE
from stages.training import split_section
from tinycls.cache import load_classes, load_split
from tinycls.checkpoint import checkpoint_meta
from tinycls.models import build_model
from tinycls.pseudo import DataConfig
from tinycls.resume import fingerprint
from tinycls.train import fit, seed_everything

ROOT = Path(__file__).resolve().parents[1]


def params_error() -> float:
    """Seconds from `dvc repro` to its exit on a bad student.batch_size."""
    params = ROOT / "params.yaml"
    good = params.read_text()
    bad = yaml.safe_load(good)
    bad["student"]["batch_size"] = 0
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    try:
        params.write_text(yaml.safe_dump(bad, sort_keys=False))
        start = time.perf_counter()
        r = subprocess.run([shutil.which("dvc", path=env["PATH"]), "repro"], cwd=ROOT, env=env,
                           capture_output=True, text=True)  # fmt: skip
        seconds = time.perf_counter() - start
    finally:
        params.write_text(good)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "[student].batch_size: 0 must be >= 1" in out, out[-2000:]
    assert "Running stage 'prepare'" not in out and "Traceback" not in out, out[-2000:]
    return seconds


def student_fit(epochs: int, resume: Path | None) -> tuple[float, float]:
    """(seconds, best val F1) of the quick start's student fitted for `epochs`."""
    student = yaml.safe_load((ROOT / "params.yaml").read_text())["student"]
    data = [(DataConfig, ("train_on", "allow_unmatched_init"))]
    m, cfg, _ = split_section("student", {**student, "epochs": epochs}, data)
    classes = load_classes(CACHE)
    train, val = load_split(CACHE, "train"), load_split(CACHE, "val")
    seed_everything(cfg.seed)
    model = build_model(m.arch, len(classes))
    meta = checkpoint_meta(m.arch, classes, m.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        r = fit(model, train, val, cfg, Path(tmp) / "best.pt", meta, progress=False, resume=resume)
        seconds = time.perf_counter() - start
    return seconds, r.best_f1


def state_save(arch: str, size: int, repeats: int) -> tuple[float, int]:
    """(seconds per save, bytes) of one resume state's bulk: weights, AdamW moments, best weights."""
    model = build_model(arch, 10)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0e-3)
    model(torch.randn(2, 3, size, size)).sum().backward()
    opt.step()
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.pt"
        start = time.perf_counter()
        for _ in range(repeats):
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "best_state": best}, path)
            os.replace(path, path.with_suffix(".done"))
        seconds = (time.perf_counter() - start) / repeats
        size = path.with_suffix(".done").stat().st_size
    return seconds, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with page("hardening", title="bad params and resuming") as emit:
        emit(f"params error: dvc repro exits after {params_error():.1f} s, in the check stage")
        student = yaml.safe_load((ROOT / "params.yaml").read_text())["student"]
        m, cfg, _ = split_section("student", student, [(DataConfig, ("train_on", "allow_unmatched_init"))])
        train, val = load_split(CACHE, "train"), load_split(CACHE, "val")
        meta = checkpoint_meta(m.arch, load_classes(CACHE), m.input_size)
        start = time.perf_counter()
        fingerprint(build_model(m.arch, len(meta["classes"])), train, val, cfg, meta, None)
        n = f"{len(train[0]):,} + {len(val[0]):,} images"
        emit(f"student: fingerprint {time.perf_counter() - start:.2f} s per fit ({n})")
        for arch, size in ((m.arch, m.input_size), ("timm:tf_efficientnet_lite0", 48)):
            seconds, nbytes = state_save(arch, size, 5)
            emit(f"{arch}: resume state {seconds * 1000:.0f} ms per epoch, {nbytes / 1e6:.1f} MB")
        times: dict[str, list[float]] = {"without": [], "with": []}
        f1s = set()
        for kind in ("without", "with", "with", "without"):
            with tempfile.TemporaryDirectory() as tmp:
                seconds, f1 = student_fit(args.epochs, Path(tmp) / "resume.pt" if kind == "with" else None)
            times[kind].append(seconds)
            f1s.add(f1)
        assert len(f1s) == 1, f1s
        a, b = (sum(times[k]) / 2 for k in ("without", "with"))
        emit(
            f"student fit, {args.epochs} epoch(s), A B B A: {a:.1f} s without a resume file, {b:.1f} s with "
            f"({(b / a - 1) * 100:+.1f}%); best val F1 {f1s.pop():.4f} every time"
        )


if __name__ == "__main__":
    main()
