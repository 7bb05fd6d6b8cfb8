"""The quick-start pipeline's current results and wall time: a forced `dvc repro` of each stage
of dvc.yaml in order (not of data.dvc, which a forced repro would re-hash and re-commit: 70,000
files), then a `dvc repro` with nothing changed, and whether the forced rerun reproduced the
recorded metrics. Writes its block of docs/results/pipeline.md: per stage, its time and what it
produced.

Run from the repository root with the venv on PATH (`make bench` does), on a clean workspace
after `dvc repro`: `python -m benchmarks.pipeline`.
"""

import json
import statistics
import subprocess
import time
from pathlib import Path

import yaml

from benchmarks.results import page

METRICS = sorted(Path("metrics").glob("*.json"))


def timed(*cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def results(m: dict[str, dict]) -> dict[str, str]:
    """What each stage produced, from its metrics file (and score.json's view of it on test)."""
    s, st, t, p = m["score"], m["student"], m["teacher"], m["pseudo"]
    pre, a, c, prep, e = m["pretrain"], m["assistant"], m["compress"], m["prepare"], m["export"]
    n = prep["images"]
    return {
        "prepare": f"{n['train']:,} train, {n['val']:,} val, {n['test']:,} test images at {prep['image_size']} px",
        "pretrain": f"{pre['source']}: val F1 {pre['val_f1']:.4f}" if pre["val_f1"] is not None else pre["source"],
        "teacher": f"{t['weights'] or 'from scratch'}, {t['train_images']:,} images, {t.get('epochs', '?')} epochs: "
        f"val F1 {t['val_f1']:.4f}, "
        f"test F1 {s['pseudo_label_f1']:.4f} (its pseudo labels)",
        "pseudo": f"{p['coverage']:.1%} of test at confidence >= {p['threshold']}",
        "assistant": "trained" if a["trained"] else "not trained (kd.teachers does not list it)",
        "student": f"{s.get('arch', '')} ({s.get('student_macs', s['macs']):,} MACs, "
        f"{s.get('student_params', s['params']):,} params), {st['kd_mode']} KD (teacher outputs: "
        f"{st.get('teacher_outputs', '?')}), {st['train_images']:,} images, {st['epochs']} epochs (best at "
        f"{st.get('best_epoch', '?')}): selection F1 {st['val_f1']:.4f}, test F1 {s['student_f1']:.4f}",
        "compress": f"{c['compression']}: {c['macs']:,} MACs" if c["compressed"] else "off: the student passes through",
        "export": f"ONNX {e['fp32']['bytes']:,} B, INT8 ({e.get('int8_method', 'ptq').upper()}) "
        f"{e['int8']['bytes']:,} B; batch-1 p50 "
        f"{e['fp32']['latency_ms_p50']:.3f} / {e['int8']['latency_ms_p50']:.3f} ms (1 thread); "
        f"INT8 agrees with PyTorch on {e['int8_agreement']:.2%} of test",
        "score": f"test F1 {s['f1']:.4f}, {s['macs']:,} MACs, {s['params']:,} params, score {s['score']:.4f} "
        "(lower is better); "
        f"ONNX F1 {s['onnx_f1']:.4f}, INT8 {s['int8_f1']:.4f}",
    }  # fmt: skip


def steady(metrics: dict | None) -> dict | None:
    """A metrics file without what is measured in time or memory (latency, peak memory), which
    differs a little on every run: the rest must reproduce exactly."""
    if not isinstance(metrics, dict):
        return metrics
    timed = ("latency_ms", "peak_memory")
    return {k: steady(v) for k, v in metrics.items() if not any(t in k for t in timed)}


def main() -> None:
    with page("pipeline", title="the quick-start pipeline, forced and no-op") as emit:
        before = [json.loads(p.read_text()) if p.exists() else None for p in METRICS]
        stages = list(yaml.safe_load(Path("dvc.yaml").read_text())["stages"])
        times = {stage: timed("dvc", "repro", "--force", "--single-item", stage) for stage in stages}
        full = sum(times.values())
        after = [json.loads(p.read_text()) for p in METRICS]
        noop = statistics.median(timed("dvc", "repro") for _ in range(3))
        produced = results({p.stem: json.loads(p.read_text()) for p in METRICS})
        table = ["| stage | time | result |", "|---|---|---|"]
        table += [f"| `{stage}` | {t:.0f} s | {produced.get(stage, '')} |" for stage, t in times.items()]
        table.append(f"| all, stage by stage (`dvc repro --force --single-item`) | {full:.0f} s | |")
        table.append(f"| `dvc repro` with nothing changed (median of 3) | {noop:.1f} s | |")
        emit("\n".join(table))
        same = [steady(b) for b in before] == [steady(a) for a in after]
        emit(f"metrics identical to the recorded run (latency and peak memory aside): {same}")


if __name__ == "__main__":
    main()
