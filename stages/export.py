"""Stage `export`: the final model (compress's output) as ONNX with its preprocessing in the
metadata, checked against PyTorch on every test image; an INT8 copy, by quantization-aware
fine-tuning distilled from the FP32 model (or ONNX Runtime's post-training quantization) on
training images; and what both cost on this CPU: bytes, batch-1 latency (p50/p90, one thread and
all threads) and peak memory. No test label is read here: the score stage scores both files."""

import platform
import shutil
import tempfile
from pathlib import Path

import torch

from stages.params import CACHE, COMPRESS, EXPORT, EXPORT_METRICS, run, section, source, write_json
from tinycls.checkpoint import load_checkpoint
from tinycls.config import from_section
from tinycls.device import resolve_device
from tinycls.errors import InputError
from tinycls.export import (
    ExportConfig,
    calibration_sample,
    cpu_threads,
    export_onnx,
    int8_model,
    measure,
    onnx_logits,
    onnx_metadata,
    parity,
    session,
)
from tinycls.predict import predict_checkpoint
from tinycls.prepare import load_classes, load_split


def settings() -> ExportConfig:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    return from_section(ExportConfig, section("export"), source("export"))


def main() -> None:
    p = settings()
    model, meta = load_checkpoint(COMPRESS / "model.pt", classes=load_classes(CACHE), role="final model")
    test_x, _ = load_split(CACHE, "test")
    train_x, _ = load_split(CACHE, "train")
    calibration = calibration_sample(train_x, p.calibration_images, p.seed)
    with tempfile.TemporaryDirectory(prefix="tinycls-export-") as tmp:  # EXPORT changes only when all holds
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
        method = int8_model(model, meta, fp32, train_x, calibration, int8, p, resolve_device(p.device))
        int8_pred = onnx_logits(session(int8), onnx_meta, test_x, p.batch_size).argmax(1)
        agreement = float((int8_pred == torch_logits.argmax(1)).mean()) if len(test_x) else 1.0
        shutil.rmtree(EXPORT, ignore_errors=True)
        EXPORT.mkdir(parents=True)
        for f in (fp32, int8):
            shutil.move(f, EXPORT / f.name)
    costs = {"fp32": measure(EXPORT / fp32.name, p), "int8": measure(EXPORT / int8.name, p)}
    write_json(
        EXPORT_METRICS,
        {
            "opset": p.opset,
            "arch": meta["arch"],
            "input_size": meta["input_size"],
            "parity_max_abs_diff": check.max_abs_diff,
            "parity_argmax_mismatches": check.argmax_mismatches,
            "parity_images": check.images,
            "calibration_images": len(calibration),
            "int8_method": method,  # qat | ptq (ptq also when qat was asked for a model torch.fx cannot trace)
            "int8_agreement": agreement,  # share of test images where INT8 predicts as PyTorch FP32
            **costs,
            "threads_all": cpu_threads(),
            "machine": f"{platform.machine()}, {cpu_threads()} cores",
        },
    )
    f, q = costs["fp32"], costs["int8"]
    print(
        f"export: {EXPORT / fp32.name} {f['bytes']:,} B, {f['latency_ms_p50']:.3f} ms p50 (1 thread); "
        f"INT8 ({method}) {q['bytes']:,} B, {q['latency_ms_p50']:.3f} ms, agrees on {agreement:.2%}; "
        f"parity max |diff| {check.max_abs_diff:.2g}"
    )


if __name__ == "__main__":
    run(main)
