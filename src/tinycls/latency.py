"""What an ONNX file costs on this CPU: batch-1 latency (p50/p90; one thread, and ONNX Runtime's
default of all cores) and the peak memory a session and one prediction add.

Measured in a fresh process (`python -m tinycls.latency FILE RUNS WARMUP SEED ALL_THREADS`) that
imports only numpy and ONNX Runtime, as a deployment would: in the process that has just run
PyTorch, its idle OpenMP threads still spin and double a tiny model's latency (measured: 0.29
against 0.16 ms p50). This module imports nothing else at its top for that reason.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _status(key: str) -> int | None:
    try:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
    except OSError:
        return None


def _session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads, o.log_severity_level = threads, 1, 3
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def _timed(s: Any, x: np.ndarray, runs: int, warmup: int) -> tuple[float, float]:
    feed = {s.get_inputs()[0].name: x}
    for _ in range(warmup):
        s.run(None, feed)
    t = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        s.run(None, feed)
        t[i] = time.perf_counter() - start
    return float(np.percentile(t, 50) * 1e3), float(np.percentile(t, 90) * 1e3)


def run_measurement(path: str, runs: int, warmup: int, seed: int, all_threads: bool) -> dict[str, Any]:
    """The measurement itself, in this process (main() of the fresh one)."""
    out: dict[str, Any] = {"peak_memory_bytes": None}
    rng = np.random.default_rng(seed)  # numpy.random loaded before the reset: only the model counts
    import onnxruntime  # noqa: F401  loaded before the reset too: only the session and the run count

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the peak (VmHWM) to the current resident size
        before = _status("VmRSS")
    except OSError:
        before = None
    one = _session(path, 1)
    shape = [1 if not isinstance(d, int) else d for d in one.get_inputs()[0].shape]
    x = rng.standard_normal(shape).astype(np.float32)
    one.run(None, {one.get_inputs()[0].name: x})
    if before is not None:
        out["peak_memory_bytes"] = (_status("VmHWM") - before) * 1024
    out["latency_ms_p50"], out["latency_ms_p90"] = _timed(one, x, runs, warmup)
    if all_threads:
        all_cores = _session(path, 0)
        out["latency_ms_p50_all_threads"], out["latency_ms_p90_all_threads"] = _timed(all_cores, x, runs, warmup)
    return out


def _measure(path: Path, runs: int, warmup: int, seed: int, all_threads: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tinycls.latency", str(path), str(runs), str(warmup), str(seed), str(int(all_threads))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"measuring {path} in ONNX Runtime failed: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def latency_ms(path: Path, runs: int = 300, warmup: int = 30, seed: int = 0) -> dict[str, float]:
    """ONNX Runtime CPU latency of one batch-1 prediction on one thread: p50 and p90 in ms over
    `runs` timed runs after `warmup` untimed ones, in a fresh process."""
    m = _measure(path, runs, warmup, seed, all_threads=False)
    return {"p50": m["latency_ms_p50"], "p90": m["latency_ms_p90"]}


def model_latency_ms(model: Any, arch: str, size: int, runs: int = 100, warmup: int = 10) -> float:
    """p50 batch-1 ONNX Runtime latency (one thread) of an untrained `model` at `size` px: what
    `tinycls search --latency` puts beside MACs (weights do not change the time of dense ops)."""
    meta = {"arch": arch, "classes": ["0"], "input_size": size, "mean": [0.0] * 3, "std": [1.0] * 3}
    from tinycls.export import export_onnx  # here: the measuring process must not load PyTorch

    with tempfile.TemporaryDirectory(prefix="tinycls-latency-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, meta, path)
        return latency_ms(path, runs, warmup)["p50"]


def measure(path: Path, p: Any) -> dict[str, Any]:
    """Size, batch-1 latency (p50/p90; one thread, and ONNX Runtime's default of all cores) and
    peak memory of one ONNX file, measured in a fresh process that imports only numpy and ONNX
    Runtime; `p`: an export.ExportConfig (latency_runs, latency_warmup, seed). Peak memory: the
    resident memory that creating the session and one prediction add (Linux: the peak is reset
    through /proc/self/clear_refs and read from VmHWM; None elsewhere)."""
    m = _measure(path, p.latency_runs, p.latency_warmup, p.seed, all_threads=True)
    return {"bytes": path.stat().st_size, **m}


def main() -> None:
    path, runs, warmup, seed, all_threads = sys.argv[1], *map(int, sys.argv[2:6])
    print(json.dumps(run_measurement(path, runs, warmup, seed, bool(all_threads))))


if __name__ == "__main__":
    main()
