"""Structured compression on the quick start, as one `dvc exp run --queue` sweep: the student
uncompressed, each kind of compression right after compressing (fine-tuning off, BatchNorm
statistics re-estimated) and after fine-tuning, fine-tuning taught by the uncompressed student,
and channel pruning on an FD-MobileNet student (ShuffleNet's channel shuffle defeats
Torch-Pruning). Writes a Markdown table, mean +- std where a row ran on more than one student
seed, as the block of docs/results/compression.md named after --rows and --seeds (e.g. `rows
cmp-none,cmp-layers; seeds 0,1,2`; `rows all` without --rows).

Run from the repository root with the venv on PATH, on a clean workspace after `dvc repro`:
`python -m benchmarks.compression [--rows cmp-none,cmp-layers] [--seeds 0,1,2]`. A row whose
student (same seed and settings) already ran anywhere in this repository, e.g. in
`benchmarks.kd_sweep`, takes it from DVC's run cache: only `compress` and `score` rerun. The
experiments stay in `dvc exp show` (and feed `tinycls pareto`); the workspace is not touched.
"""

import argparse
import statistics

from benchmarks.experiments import head, named, require_clean, run_queued
from benchmarks.results import page

OFF = ["compress.keep_blocks=[]"]  # the quick start's default since c8b0b11; every row says its own
LAYERS = ["compress.keep_blocks=[2,5,2]"]  # the competition's layer pruning of ShuffleNetV1 [4, 8, 4]
FD = ["student.arch=pytorchcv:fdmobilenet_wd4", *OFF]
RUNS = {
    "cmp-none": OFF,
    "cmp-layers-no-ft": [*LAYERS, "compress.epochs=0"],
    "cmp-layers": LAYERS,
    "cmp-layers-std": [*LAYERS, "compress.block_selection=weight_std"],
    "cmp-layers-kd-student": [*LAYERS, "compress.kd_teachers=[student]"],
    "cmp-layers-kd-both": [*LAYERS, "compress.kd_teachers=[teacher,student]"],
    "cmp-split-no-ft": [*OFF, "compress.split_groups=2", "compress.epochs=0"],
    "cmp-split": [*OFF, "compress.split_groups=2"],
    "cmp-layers-split": [*LAYERS, "compress.split_groups=2"],
    "cmp-fd-none": FD,
    "cmp-fd-channels-no-ft": [*FD, "compress.channel_ratio=0.3", "compress.epochs=0"],
    "cmp-fd-channels": [*FD, "compress.channel_ratio=0.3"],
    "cmp-fd-target": [*FD, "compress.target_macs=150000"],
}


def cell(values: list[float]) -> str:
    values = [v for v in values if v == v]  # NaN: the column does not apply
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(RUNS), help=f"some of {', '.join(RUNS)}")
    ap.add_argument("--seeds", default="0", help="student.seed values, comma-separated")
    args = ap.parse_args()
    rows, seeds = args.rows.split(","), [int(s) for s in args.seeds.split(",")]
    if unknown := [r for r in rows if r not in RUNS]:
        raise SystemExit(f"--rows: unknown {unknown}; valid: {', '.join(RUNS)}")
    block = f"rows {'all' if rows == list(RUNS) else ','.join(rows)}; seeds {','.join(map(str, seeds))}"
    with page("compression", block, title="structured compression") as emit:
        require_clean("compression", "queued experiments start from HEAD")
        rev = head()
        runs = {f"{r}-s{s}": [*RUNS[r], f"student.seed={s}"] for r in rows for s in seeds}
        names = run_queued(runs, "compression")
        table: dict[str, dict] = {}
        for name, m, p in named(set(names), rev):
            row = names[name].rsplit("-s", 1)[0]
            c, score = m["metrics/compress.json"], m["metrics/score.json"]
            tuned = c.get("compressed") and c.get("fine_tune_epochs", 0) > 0
            t = table.setdefault(
                row,
                {
                    "student": p["student"]["arch"].split(":")[-1],
                    "compression": score.get("compression", "none"),
                    "teachers": c.get("kd_teachers", "") if tuned else "",
                    "epochs": c.get("fine_tune_epochs", 0) if c.get("compressed") else "-",
                    "macs": score["macs"],
                    "params": score["params"],
                    "values": [],
                },
            )
            t["values"].append(
                (
                    c.get("f1_compressed", float("nan")),
                    c["val_f1"] if tuned else float("nan"),
                    score["f1"],
                    score["student_f1"],
                    score["score"],
                )
            )
        lines = [
            "| experiment | runs | student | compression | fine-tune epochs (teachers) | MACs | params "
            "| selection F1 compressed | selection F1 fine-tuned | test F1 | test F1 of the student | score |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in [r for r in RUNS if r in table]:
            t = table[row]
            cols = [cell(list(v)) for v in zip(*t["values"], strict=True)]
            ft = f"{t['epochs']} ({t['teachers']})" if t["teachers"] else str(t["epochs"])
            lines.append(
                f"| {row} | {len(t['values'])} | {t['student']} | {t['compression']} | {ft} | {t['macs']:,} "
                f"| {t['params']:,} | {' | '.join(cols)} |"
            )
        emit("\n".join(lines))


if __name__ == "__main__":
    main()
