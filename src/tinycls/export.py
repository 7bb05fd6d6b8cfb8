"""Writing the ONNX file: the final checkpoint as ONNX that carries its own preprocessing facts,
and [export]'s settings. The INT8 copy is tinycls.int8, its costs tinycls.latency, running it
tinycls.onnx_runtime, and the export stage's one step tinycls.ship.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinycls.config import one_of
from tinycls.device import DEVICES
from tinycls.errors import InputError
from tinycls.onnx_runtime import INPUT, METADATA_KEY, OUTPUT

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
    return save_proto(proto, path)


def set_metadata(proto: Any, metadata: dict[str, Any]) -> None:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)


def save_proto(proto: Any, path: Path) -> int:
    """Write an ONNX proto atomically; returns the file's size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    os.replace(tmp, path)
    return path.stat().st_size
