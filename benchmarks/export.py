"""What the shipped files cost: for the teacher, the student and a compressed student (the
competition's layer pruning [2, 5, 2], fine-tuned as the compress stage does), MACs, params, and
for FP32, INT8 by ONNX Runtime's post-training quantization (PTQ) and INT8 by quantization-aware
fine-tuning (QAT, the stage's default): ONNX size, ONNX Runtime batch-1 latency p50/p90 (one
thread, all threads), peak memory, test macro F1 and agreement with the FP32 predictions; then
the seven default families at one input size, ranked by MACs and by measured latency
(`tinycls search --latency`), to show where the two orders disagree.

Run from the repository root after `dvc repro` (it reads artifacts/: the cache, teacher, student):
`python -m benchmarks.export [--runs 300] [--size 80]`. Writes the two parts as the blocks `files`
and `families` of docs/results/export.md, and otherwise only under a temporary folder.
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.results import page
from stages import compress as compress_stage
from stages.params import CACHE, HELD_OUT, PSEUDO, STUDENT, TEACHER, TEACHER_OUTPUTS
from tinycls.cache import load_classes, load_held_out, load_split
from tinycls.checkpoint import load_checkpoint
from tinycls.compress_student import compress_student
from tinycls.export import ExportConfig, export_onnx
from tinycls.families import CANDIDATES, search, to_markdown
from tinycls.int8 import qat_int8, quantize_int8
from tinycls.latency import measure
from tinycls.macs import count_macs
from tinycls.onnx_runtime import calibration_sample, onnx_logits, read_metadata, session
from tinycls.pseudo import training_data
from tinycls.qat import NotTraceable
from tinycls.run import Start, train_model
from tinycls.score import macro_f1


def compressed_student(out: Path) -> Path:
    """The quick-start student with keep_blocks [2, 5, 2], fine-tuned by the compress stage's own
    settings and calls (params.yaml [compress] otherwise as it is)."""
    p, m, cfg, data, pseudo, kd = compress_stage.settings()
    p = dataclasses.replace(p, keep_blocks=[2, 5, 2])
    split, _ = training_data(CACHE, PSEUDO, TEACHER, data.train_on, pseudo)
    student, meta = load_checkpoint(STUDENT, classes=split.classes)
    c = compress_student(student, meta, p, split.train, split.val, cfg, str(STUDENT))
    train_model(
        "compress", m, dataclasses.replace(cfg, epochs=p.epochs, lr=p.lr), split, out,
        start=Start(model=c.model, meta=c.meta_extra), kd=kd, teachers=TEACHER_OUTPUTS,
    )  # fmt: skip
    return out


def row(name: str, checkpoint: Path, tmp: Path, p: ExportConfig, test_x, test_y, train_x) -> dict:
    model, meta = load_checkpoint(checkpoint)
    macs, params = count_macs(model, meta["input_size"])
    fp32, ptq, qat = (tmp / f"{name}.{kind}.onnx" for kind in ("fp32", "ptq", "qat"))
    calibration = calibration_sample(train_x, p.calibration_images, p.seed)
    export_onnx(model, meta, fp32, p.opset)
    quantize_int8(fp32, ptq, calibration, p.calibration_method)
    t, kinds = time.perf_counter(), [("FP32", fp32), ("INT8 PTQ", ptq), ("INT8 QAT", qat)]
    try:
        qat_int8(model, meta, train_x, calibration, qat, p, torch.device("cpu"), progress=False)
    except NotTraceable as e:
        print(f"{name}: {e}")
        kinds.pop()
    out = {"name": name, "macs": macs, "params": params, "qat_s": time.perf_counter() - t}
    k = len(meta["classes"])
    for kind, path in kinds:
        pred = onnx_logits(session(path), read_metadata(path), test_x, p.batch_size).argmax(1)
        reference = pred if kind == "FP32" else out["FP32"]["pred"]
        out[kind] = {**measure(path, p), "f1": macro_f1(test_y, pred, k), "pred": pred,
                     "agreement": float((pred == reference).mean())}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300, help="timed batch-1 runs per model and thread count")
    ap.add_argument("--size", type=int, default=80, help="input size of the search table (the competition's)")
    args = ap.parse_args()
    p = ExportConfig(latency_runs=args.runs)
    test_x, _ = load_split(CACHE, "test")
    test_y = load_held_out(HELD_OUT)[1]
    train_x, _ = load_split(CACHE, "train")
    title = "what the shipped files cost"
    with page("export", "files", title=title) as emit:
        rows = []
        with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
            t = time.perf_counter()
            pruned = compressed_student(Path(tmp) / "compressed.pt")
            print(f"compressed student fine-tuned in {time.perf_counter() - t:.0f} s")
            for name, ckpt in (("teacher", TEACHER), ("student", STUDENT), ("student, layers [2,5,2]", pruned)):
                rows.append(row(name, ckpt, Path(tmp), p, test_x, test_y, train_x))
        emit(f"ONNX Runtime CPU, batch 1, {args.runs} runs:")
        table = [
            "| model | MACs | params | format | ONNX bytes | ms p50 / p90, 1 thread | ms p50 / p90, all threads "
            "| peak MB | test F1 | agrees with FP32 |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]

        def ms(c: dict, suffix: str = "") -> str:
            return f"{c['latency_ms_p50' + suffix]:.3f} / {c['latency_ms_p90' + suffix]:.3f}"

        for r in rows:
            for kind in ("FP32", "INT8 PTQ", "INT8 QAT"):
                c = r.get(kind)
                if c is None:
                    table.append(f"| | | | {kind} | not torch.fx-traceable (the stage falls back to PTQ) | | | | | |")
                    continue
                mb = f"{c['peak_memory_bytes'] / 2**20:.1f}" if c["peak_memory_bytes"] else "-"
                head = f"| {r['name']} | {r['macs']:,} | {r['params']:,} " if kind == "FP32" else "| | | "
                table.append(
                    f"{head}| {kind} | {c['bytes']:,} | {ms(c)} | {ms(c, '_all_threads')} | {mb} | {c['f1']:.4f} "
                    f"| {c['agreement']:.2%} |"
                )
        emit("\n".join(table))
        emit(f"QAT ({p.qat_epochs} epochs of {len(train_x):,} training images, CPU): "
             + ", ".join(f"{r['name']} {r['qat_s']:.0f} s" for r in rows if "INT8 QAT" in r))  # fmt: skip
    with page("export", "families", title=title) as emit:
        torch.manual_seed(0)
        cands = search(list(CANDIDATES), [args.size], len(load_classes(CACHE)), latency=True)
        emit(f"The seven default families at {args.size} px, 10 classes (`tinycls search --latency`):")
        emit(to_markdown(cands))
        by_macs = [c.arch for c in cands]
        by_ms = [c.arch for c in sorted(cands, key=lambda c: c.latency_ms)]
        swaps = [
            (a, b)
            for i, a in enumerate(by_macs)
            for b in by_macs[i + 1 :]
            if by_ms.index(b) < by_ms.index(a)  # b has more MACs but runs faster
        ]
        emit(
            "\n".join(
                [f"{len(swaps)} of {len(by_macs) * (len(by_macs) - 1) // 2} pairs ordered differently by latency:"]
                + [f"- {b.split(':')[1]} has more MACs than {a.split(':')[1]} but runs faster" for a, b in swaps]
            )
        )


if __name__ == "__main__":
    main()
