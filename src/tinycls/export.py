"""A model you can ship: the final checkpoint as an ONNX file that carries its own preprocessing
facts, an INT8 copy (quantization-aware fine-tuning, tinycls.qat, or ONNX Runtime's static
quantization), and what each costs on a CPU
(bytes, batch-1 latency, peak memory), measured with ONNX Runtime.

The ONNX graph takes what the network takes: float (batch, 3, input_size, input_size),
normalized by the recorded mean and std. How an image file becomes that input is in the
file's metadata (key `tinycls`, JSON): decode to RGB, resize the long side to `cache_size`
and pad to a centred black square (Pillow, bilinear), then resize to `input_size` (bilinear,
antialiased, PyTorch's F.interpolate) and normalize. `tinycls predict model.onnx` does exactly
that (`onnx_logits`), as training did.
"""

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinycls.config import one_of
from tinycls.device import DEVICES
from tinycls.errors import InputError, MissingInput
from tinycls.transforms import to_input

METADATA_KEY = "tinycls"
INPUT, OUTPUT = "input", "logits"
PREPROCESSING = (
    "RGB (alpha on black); resize the long side to cache_size and pad to a centred black square "
    "(Pillow bilinear); resize to input_size (bilinear, antialiased); x/255, then (x - mean) / std per "
    "channel; NCHW float32"
)
CALIBRATION = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
INT8 = {
    "qat": "quantization-aware fine-tuning distilled from the FP32 model (tinycls.qat)",
    "ptq": "ONNX Runtime's post-training static quantization",
}
# PyTorch 2.14's exporter writes opset 18 at the least: asked for 17, it falls back to 18 (its
# down-conversion lacks Pad). 18 and 21 export, quantize and run for the student and the teacher.
MIN_OPSET, MAX_OPSET = 18, 21


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 18  # ONNX opset, MIN_OPSET..MAX_OPSET
    parity_tolerance: float = 1.0e-3  # max |logit difference| of ONNX Runtime against PyTorch
    calibration_images: int = 512  # training images that calibrate INT8 activation ranges
    calibration_method: str = "minmax"  # minmax | entropy | percentile (ONNX Runtime's calibrators)
    max_int8_f1_drop: float = 0.01  # INT8 F1 below the FP32 model's by more than this is flagged
    latency_runs: int = 300  # timed batch-1 runs per model and thread count
    latency_warmup: int = 30  # untimed runs before them
    batch_size: int = 256  # images per ONNX Runtime call for parity and F1
    seed: int = 0  # which training images calibrate, and the fine-tuning's order
    int8: str = "qat"  # qat | ptq: how the INT8 model is made (INT8)
    qat_epochs: int = 2  # quantization-aware fine-tuning epochs over the training images (int8: qat)
    qat_lr: float = 1.0e-4  # its Adam learning rate (cosine to 0)
    qat_batch_size: int = 128
    device: str = "auto"  # where the fine-tuning runs: auto | cpu | cuda

    def __post_init__(self) -> None:
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise InputError(f"opset: {self.opset} is outside {MIN_OPSET}..{MAX_OPSET}.")
        if not 0 < self.parity_tolerance:
            raise InputError(f"parity_tolerance: {self.parity_tolerance} must be > 0.")
        if self.calibration_images < 1:
            raise InputError(f"calibration_images: {self.calibration_images} must be >= 1.")
        one_of("calibration_method", self.calibration_method, CALIBRATION)
        if not 0.0 <= self.max_int8_f1_drop <= 1.0:
            raise InputError(f"max_int8_f1_drop: {self.max_int8_f1_drop} must be in [0, 1].")
        if self.latency_runs < 10 or self.latency_warmup < 0:
            raise InputError(
                f"latency_runs: {self.latency_runs} must be >= 10 (a p90 needs them), latency_warmup: "
                f"{self.latency_warmup} >= 0."
            )
        if self.batch_size < 1:
            raise InputError(f"batch_size: {self.batch_size} must be >= 1.")
        one_of("int8", self.int8, INT8)
        if self.qat_epochs < 0 or not self.qat_lr > 0 or self.qat_batch_size < 1:
            raise InputError(
                f"qat_epochs: {self.qat_epochs} must be >= 0, qat_lr: {self.qat_lr} > 0, qat_batch_size: "
                f"{self.qat_batch_size} >= 1."
            )
        one_of("device", self.device, DEVICES)


def onnx_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's facts a runtime needs to predict (JSON under METADATA_KEY)."""
    return {
        "format": 1,
        "classes": list(meta["classes"]),
        "input_size": int(meta["input_size"]),
        "cache_size": int(meta.get("cache_size", meta["input_size"])),
        "mean": list(meta["mean"]),
        "std": list(meta["std"]),
        "preprocessing": PREPROCESSING,
        "input": INPUT,
        "output": OUTPUT,
        "arch": meta["arch"],
        "stage": meta.get("stage", ""),
        "compression": meta.get("compression", "none"),
    }


def _export(model: nn.Module, size: int, opset: int) -> "Any":
    """torch.onnx's exporter (torch.export based) with a dynamic batch; returns an onnx.ModelProto."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines; errors still raise
        program = torch.onnx.export(
            model, (torch.zeros(2, 3, size, size),), None, input_names=[INPUT], output_names=[OUTPUT],
            opset_version=opset, dynamo=True, dynamic_shapes=({0: batch},), external_data=False, optimize=True,
            verbose=False, report=False,
        )  # fmt: skip
    return program.model_proto


def _culprit(model: nn.Module, size: int, opset: int) -> str:
    """The innermost module whose forward does not export on its own: the one to name when the
    whole model fails (its inputs captured by one forward pass)."""
    inputs: dict[str, tuple] = {}

    def keep(name: str) -> Any:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:  # None: the output stays as it is
            inputs.setdefault(name, args)

        return hook

    hooks = [m.register_forward_hook(keep(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(torch.zeros(2, 3, size, size))
    except Exception as e:  # the model does not even run: that is the message
        return f"the model's forward fails ({type(e).__name__}: {e})"
    finally:
        for h in hooks:
            h.remove()
    failing = ""
    for name, m in model.named_modules():  # parents before children: the last failing one is innermost
        args = inputs.get(name)
        if not name or args is None or not all(isinstance(a, torch.Tensor) for a in args):
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(m, args, None, opset_version=opset, dynamo=True, verbose=False, report=False)
        except Exception:
            failing = name
    if not failing:
        return "no single module; the whole graph"
    return f"module `{failing}` ({type(model.get_submodule(failing)).__name__})"


def _why(error: BaseException) -> str:
    """The op and the root cause of an exporter error (its own message is mostly advice)."""
    op = re.search(r"target=(torch\.ops\.[\w.]+)", str(error))
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip().splitlines()
    cause = f"{type(root).__name__}: {text[0][:300] if text else ''}"
    return f"{op.group(1)}, {cause}" if op else cause


def export_onnx(
    model: nn.Module, meta: dict[str, Any], path: Path, opset: int = 18, extra: dict[str, Any] | None = None
) -> int:
    """Write `model` (eval mode, CPU) to `path` as ONNX with a dynamic batch and the tinycls
    metadata; per-node debug records (stack traces) are dropped, so the size is the model's.
    Written atomically: on any error nothing is written. Returns the file's size in bytes.
    `extra`: more metadata keys (e.g. how an INT8 model was quantized).

    Raises:
        InputError: an op ONNX cannot express at `opset`, naming the module.
    """
    import onnx

    model = model.cpu().eval()
    size = int(meta["input_size"])
    try:
        proto = _export(model, size, opset)
    except Exception as e:
        raise InputError(
            f"{meta['arch']}: {_culprit(model, size, opset)} does not export to ONNX opset {opset} "
            f"({_why(e)}). Replace that layer with standard ops, or try another export.opset; nothing was written."
        ) from None
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise InputError(f"{meta['arch']}: asked for ONNX opset {opset}, PyTorch's exporter wrote {written}; "
                         "set export.opset to that; nothing was written.")  # fmt: skip
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    proto.producer_name, proto.doc_string = "tinycls", f"{meta['arch']} ({size} px); metadata key {METADATA_KEY!r}"
    set_metadata(proto, {**onnx_metadata(meta), **(extra or {})})
    onnx.checker.check_model(proto)
    return _save(proto, path)


def set_metadata(proto: Any, metadata: dict[str, Any]) -> None:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)


def _save(proto: Any, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    os.replace(tmp, path)
    return path.stat().st_size


def read_metadata(path: Path) -> dict[str, Any]:
    """The tinycls metadata of an ONNX file.

    Raises:
        MissingInput: no such file.
        InputError: not an ONNX model, or one without tinycls metadata (exported elsewhere).
    """
    import onnx

    if not Path(path).is_file():
        raise MissingInput(f"{path}: no such ONNX file; `dvc repro` writes artifacts/export/model.onnx.")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise InputError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e}).") from None
    found = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in found:
        raise InputError(
            f"{path}: an ONNX model without tinycls metadata (key {METADATA_KEY!r}: classes, input size, "
            "mean, std, preprocessing), so its preprocessing is unknown. Export it with tinycls "
            "(the export stage), or predict with the runtime directly."
        )
    try:
        meta = json.loads(found[METADATA_KEY])
        classes, size, cache = meta["classes"], int(meta["input_size"]), int(meta["cache_size"])
        ok = isinstance(classes, list) and classes and len(meta["mean"]) == 3 and len(meta["std"]) == 3
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok or not 8 <= size <= 4096 or not 8 <= cache <= 4096:
        raise InputError(f"{path}: its {METADATA_KEY!r} metadata is damaged; re-export it with `dvc repro`.")
    return meta


def session(path: Path, threads: int = 0) -> "Any":
    """An ONNX Runtime CPU session; threads 0 = ONNX Runtime's default (all physical cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _inputs(meta: dict[str, Any], images: Any, batch_size: int) -> Iterator[np.ndarray]:
    """Batches of uint8 images (N, S, S, 3) at the cache side (an array or tinycls Rows) as the
    graph's float input, prepared exactly as for the PyTorch model (tinycls.transforms.to_input)."""
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[i : i + batch_size]))
        yield to_input(x, meta["input_size"], tuple(meta["mean"]), tuple(meta["std"])).numpy()


def onnx_logits(sess: Any, meta: dict[str, Any], images: Any, batch_size: int = 256) -> np.ndarray:
    """Logits (N, K) for uint8 images (N, S, S, 3) at the cache side (an array or tinycls Rows)."""
    names, key = [meta.get("output", OUTPUT)], meta.get("input", INPUT)
    out = [sess.run(names, {key: x})[0] for x in _inputs(meta, images, batch_size)]
    return np.concatenate(out) if out else np.empty((0, len(meta["classes"])), np.float32)


def calibration_sample(images: Any, n: int, seed: int) -> np.ndarray:
    """n of `images` (all when fewer), drawn without replacement by `seed`, in index order."""
    n = min(n, len(images))
    return images[np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))]


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime's logits against PyTorch's. No logit moving by more than max_abs_diff, an
    argmax can only change where PyTorch's top two were within 2 * max_abs_diff: a tie."""

    max_abs_diff: float  # max |logit difference| over every image and class
    argmax_mismatches: int  # images where the two argmaxes differ
    images: int


def parity(reference: np.ndarray, logits: np.ndarray) -> Parity:
    """Compare ONNX Runtime's logits with PyTorch's (both (N, K))."""
    diff = float(np.abs(reference - logits).max()) if len(reference) else 0.0
    return Parity(diff, int((reference.argmax(1) != logits.argmax(1)).sum()), len(reference))


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over uint8 images, prepared as for the model."""

    def __init__(self, images: np.ndarray, meta: dict[str, Any], batch_size: int = 64) -> None:
        self.images, self.meta, self.batch_size = images, meta, batch_size
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        self._it = self._it or ({INPUT: x} for x in _inputs(self.meta, self.images, self.batch_size))
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def quantize_int8(fp32: Path, out: Path, calibration: np.ndarray, method: str = "minmax") -> int:
    """ONNX Runtime static quantization of `fp32` into `out`: `quant_pre_process` first, then QDQ
    with per-channel INT8 weights and UINT8 activations (the x86 CPU pairing) whose ranges are
    calibrated on `calibration` (uint8 images at the cache side). The tinycls metadata is kept.
    Returns the INT8 file's size in bytes."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    meta = read_metadata(fp32)
    with tempfile.TemporaryDirectory(prefix="tinycls-int8-") as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(pre))
        quantize_static(
            str(pre), str(q), _Calibration(calibration, meta), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, CALIBRATION[method]),
            calibration_providers=["CPUExecutionProvider"],
        )  # fmt: skip
        proto = onnx.load(str(q))
    set_metadata(proto, {**meta, "quantization": f"INT8 QDQ, per-channel weights, {method} calibration"})
    proto.producer_name = "tinycls"
    return _save(proto, out)


def qat_int8(
    model: nn.Module,
    meta: dict[str, Any],
    images: Any,
    calibration: np.ndarray,
    out: Path,
    p: ExportConfig,
    device: torch.device,
    progress: bool = True,
) -> int:
    """INT8 QDQ ONNX of `model` after quantization-aware fine-tuning (tinycls.qat) on `images`
    (uint8 at the cache side, no labels: it learns the FP32 model's predictions), activation ranges
    starting from `calibration`; the weights are stored as INT8, ONNX Runtime runs integer kernels.
    `model` is not modified. Returns the file's size in bytes."""
    from tinycls import qat

    tuned = qat.fine_tune(
        model, meta, images, calibration, p.qat_epochs, p.qat_lr, p.qat_batch_size, p.seed, device, progress
    )
    how = f"INT8 QDQ, per-channel weights, quantization-aware fine-tuning ({p.qat_epochs} epochs)"
    return export_onnx(qat.to_qdq(tuned), meta, out, p.opset, extra={"quantization": how})


def int8_model(
    model: nn.Module,
    meta: dict[str, Any],
    fp32: Path,
    images: Any,
    calibration: np.ndarray,
    out: Path,
    p: ExportConfig,
    device: torch.device,
    progress: bool = True,
) -> str:
    """Write the INT8 model to `out` as `p.int8` says; returns how it was made: "qat", or "ptq" also
    when QAT was asked for a model torch.fx cannot trace (said on stdout: the FP32 export and the
    training before it are fine, and an error here would waste them)."""
    from tinycls import qat

    if p.int8 == "qat":
        try:
            qat_int8(model, meta, images, calibration, out, p, device, progress)
            return "qat"
        except qat.NotTraceable as e:
            print(f"export: {e} INT8 by post-training quantization instead.")
    quantize_int8(fp32, out, calibration, p.calibration_method)
    return "ptq"


# Run in a fresh process that imports only numpy and ONNX Runtime, as a deployment would: in the
# process that has just run PyTorch, its idle OpenMP threads still spin and double a tiny
# model's latency (measured: 0.29 against 0.16 ms p50).
_MEASURE = """
import json, sys, time
import numpy as np, onnxruntime as ort

path, runs, warmup, seed, all_threads = sys.argv[1], *map(int, sys.argv[2:6])
x = None

def status(key):
    try:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
    except OSError:
        return None

def session(threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads, o.log_severity_level = threads, 1, 3
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])

def timed(s):
    feed = {s.get_inputs()[0].name: x}
    for _ in range(warmup):
        s.run(None, feed)
    t = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        s.run(None, feed)
        t[i] = time.perf_counter() - start
    return float(np.percentile(t, 50) * 1e3), float(np.percentile(t, 90) * 1e3)

out = {"peak_memory_bytes": None}
rng = np.random.default_rng(seed)  # numpy.random loaded before the reset: only the model counts
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: reset the peak (VmHWM) to the current resident size
    before = status("VmRSS")
except OSError:
    before = None
one = session(1)
shape = [1 if not isinstance(d, int) else d for d in one.get_inputs()[0].shape]
x = rng.standard_normal(shape).astype(np.float32)
one.run(None, {one.get_inputs()[0].name: x})
if before is not None:
    out["peak_memory_bytes"] = (status("VmHWM") - before) * 1024
out["latency_ms_p50"], out["latency_ms_p90"] = timed(one)
if all_threads:
    out["latency_ms_p50_all_threads"], out["latency_ms_p90_all_threads"] = timed(session(0))
print(json.dumps(out))
"""


def _measure(path: Path, runs: int, warmup: int, seed: int, all_threads: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-c", _MEASURE, str(path), str(runs), str(warmup), str(seed), str(int(all_threads))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"measuring {path} in ONNX Runtime failed: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def latency_ms(path: Path, runs: int = 300, warmup: int = 30, seed: int = 0) -> dict[str, float]:
    """ONNX Runtime CPU latency of one batch-1 prediction on one thread: p50 and p90 in ms over
    `runs` timed runs after `warmup` untimed ones, in a fresh process."""
    m = _measure(path, runs, warmup, seed, all_threads=False)
    return {"p50": m["latency_ms_p50"], "p90": m["latency_ms_p90"]}


def model_latency_ms(model: nn.Module, arch: str, size: int, runs: int = 100, warmup: int = 10) -> float:
    """p50 batch-1 ONNX Runtime latency (one thread) of an untrained `model` at `size` px: what
    `tinycls search --latency` puts beside MACs (weights do not change the time of dense ops)."""
    meta = {"arch": arch, "classes": ["0"], "input_size": size, "mean": [0.0] * 3, "std": [1.0] * 3}
    with tempfile.TemporaryDirectory(prefix="tinycls-latency-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, meta, path)
        return latency_ms(path, runs, warmup)["p50"]


def cpu_threads() -> int:
    """The cores this process may use (what ONNX Runtime's default thread count follows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure(path: Path, p: ExportConfig) -> dict[str, Any]:
    """Size, batch-1 latency (p50/p90; one thread, and ONNX Runtime's default of all cores) and
    peak memory of one ONNX file, measured in a fresh process that imports only numpy and ONNX
    Runtime. Peak memory: the resident memory that creating the session and one prediction add
    (Linux: the peak is reset through /proc/self/clear_refs and read from VmHWM; None elsewhere)."""
    m = _measure(path, p.latency_runs, p.latency_warmup, p.seed, all_threads=True)
    return {"bytes": path.stat().st_size, **m}
