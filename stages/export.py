"""Stage `export`: the final model (compress's output) as ONNX with its preprocessing in the
metadata, checked against PyTorch on every test image; an INT8 copy, by quantization-aware
fine-tuning distilled from the FP32 model (or ONNX Runtime's post-training quantization) on
training images; and what both cost on this CPU: bytes, batch-1 latency (p50/p90, one thread and
all threads) and peak memory (tinycls.ship). No test label is read here: `score` scores both."""

from stages.params import CACHE, COMPRESS, EXPORT, EXPORT_METRICS, section, source
from stages.runner import run, write_json
from tinycls.cache import load_classes, load_split
from tinycls.checkpoint import load_checkpoint
from tinycls.config import from_section
from tinycls.device import resolve_device
from tinycls.export import ExportConfig
from tinycls.ship import export_model


def settings() -> ExportConfig:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    return from_section(ExportConfig, section("export"), source("export"))


def main() -> None:
    p = settings()
    model, meta = load_checkpoint(COMPRESS / "model.pt", classes=load_classes(CACHE), role="final model")
    (test_x, _), (train_x, _) = load_split(CACHE, "test"), load_split(CACHE, "train")
    m = export_model(model, meta, train_x, test_x, EXPORT, p, resolve_device(p.device))
    write_json(EXPORT_METRICS, m)
    f, q = m["fp32"], m["int8"]
    print(
        f"export: {EXPORT / 'model.onnx'} {f['bytes']:,} B, {f['latency_ms_p50']:.3f} ms p50 (1 thread); "
        f"INT8 ({m['int8_method']}) {q['bytes']:,} B, {q['latency_ms_p50']:.3f} ms, agrees on "
        f"{m['int8_agreement']:.2%}; parity max |diff| {m['parity_max_abs_diff']:.2g}"
    )


if __name__ == "__main__":
    run(main)
