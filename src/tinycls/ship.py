"""The export stage's one step: a trained model as the files a device gets (ONNX and its INT8
copy), checked against PyTorch on every test image, with what each costs on this CPU."""

import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinycls.errors import InputError
from tinycls.export import ExportConfig, export_onnx, onnx_metadata
from tinycls.int8 import int8_model
from tinycls.latency import measure
from tinycls.onnx_runtime import calibration_sample, onnx_logits, parity, session
from tinycls.predict import predict_checkpoint
from tinycls.ranks import cpu_threads


def export_model(
    model: nn.Module, meta: dict[str, Any], train_x: Any, test_x: Any, out: Path, p: ExportConfig, device: torch.device
) -> dict[str, Any]:
    """Write `out`/model.onnx and `out`/model.int8.onnx (INT8 calibrated, or fine-tuned on `device`,
    with `train_x`; uint8 images at the cache side) and return their metrics: parity with PyTorch
    and INT8 agreement on `test_x` (no labels), bytes, latency and peak memory. `out` changes only
    when everything holds.

    Raises:
        InputError: the ONNX file disagrees with PyTorch beyond p.parity_tolerance (nothing written).
    """
    calibration = calibration_sample(train_x, p.calibration_images, p.seed)
    with tempfile.TemporaryDirectory(prefix="tinycls-export-") as tmp:
        fp32, int8 = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        export_onnx(model, meta, fp32, p.opset)
        onnx_meta = onnx_metadata(meta)  # what export_onnx wrote into the file
        torch_logits = predict_checkpoint(model, meta, test_x, torch.device("cpu"), p.batch_size).numpy()
        check = parity(torch_logits, onnx_logits(session(fp32), onnx_meta, test_x, p.batch_size))
        if check.max_abs_diff > p.parity_tolerance:  # within it, a changed argmax is a tie (Parity)
            raise InputError(
                f"ONNX Runtime differs from PyTorch on the {check.images} test images: max |logit difference| "
                f"{check.max_abs_diff:.3g} > export.parity_tolerance {p.parity_tolerance:g}, "
                f"{check.argmax_mismatches} different predictions. An op exports with other semantics: try "
                "another export.opset, or report the model; nothing was written."
            )
        method = int8_model(model, meta, fp32, train_x, calibration, int8, p, device)
        int8_pred = onnx_logits(session(int8), onnx_meta, test_x, p.batch_size).argmax(1)
        agreement = float((int8_pred == torch_logits.argmax(1)).mean()) if len(test_x) else 1.0
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for f in (fp32, int8):
            shutil.move(f, out / f.name)
    return {
        "opset": p.opset,
        "arch": meta["arch"],
        "input_size": meta["input_size"],
        "parity_max_abs_diff": check.max_abs_diff,
        "parity_argmax_mismatches": check.argmax_mismatches,
        "parity_images": check.images,
        "calibration_images": len(calibration),
        "int8_method": method,  # qat | ptq (ptq also when qat was asked for a model torch.fx cannot trace)
        "int8_agreement": agreement,  # share of test images where INT8 predicts as PyTorch FP32
        "fp32": measure(out / fp32.name, p),
        "int8": measure(out / int8.name, p),
        "threads_all": cpu_threads(),
        "machine": f"{platform.machine()}, {cpu_threads()} cores",
    }
