"""The INT8 copy of an exported model: quantization-aware fine-tuning (tinycls.qat) exported as
QDQ ONNX, or ONNX Runtime's post-training static quantization calibrated on training images."""

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinycls.export import CALIBRATION, ExportConfig, export_onnx, save_proto, set_metadata
from tinycls.onnx_runtime import INPUT, graph_inputs, read_metadata


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over uint8 images, prepared as for the model."""

    def __init__(self, images: np.ndarray, meta: dict[str, Any], batch_size: int = 64) -> None:
        self.images, self.meta, self.batch_size = images, meta, batch_size
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        self._it = self._it or ({INPUT: x} for x in graph_inputs(self.meta, self.images, self.batch_size))
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
    return save_proto(proto, out)


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
