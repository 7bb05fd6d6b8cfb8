"""Structured compression on the quick start, as one `dvc exp run --queue` sweep: the student
uncompressed, each kind of compression right after compressing (fine-tuning off, BatchNorm
statistics re-estimated) and after fine-tuning, and channel pruning on an FD-MobileNet student
(ShuffleNet's channel shuffle defeats Torch-Pruning). Prints a Markdown table for the README.

Run from the repository root with the venv on PATH, on a clean workspace after `dvc repro`:
`python -m benchmarks.compression`. The experiments stay in `dvc exp show` (and feed
`tinycls pareto`); the workspace is not touched.
"""

from benchmarks.experiments import head, named, require_clean, run_queued

OFF = ["compress.keep_blocks=[]"]
FD = ["student.arch=pytorchcv:fdmobilenet_wd4", *OFF]
RUNS = {
    "cmp-none": OFF,
    "cmp-layers-no-ft": ["compress.epochs=0"],
    "cmp-layers": [],  # the default: keep_blocks [2, 5, 2]
    "cmp-layers-std": ["compress.block_selection=weight_std"],
    "cmp-split-no-ft": [*OFF, "compress.split_groups=2", "compress.epochs=0"],
    "cmp-split": [*OFF, "compress.split_groups=2"],
    "cmp-layers-split": ["compress.split_groups=2"],
    "cmp-fd-none": FD,
    "cmp-fd-channels-no-ft": [*FD, "compress.channel_ratio=0.3", "compress.epochs=0"],
    "cmp-fd-channels": [*FD, "compress.channel_ratio=0.3"],
    "cmp-fd-target": [*FD, "compress.target_macs=150000"],
}


def main() -> None:
    require_clean("compression", "queued experiments start from HEAD")
    rev = head()
    names = run_queued(RUNS, "compression")
    rows = []
    for name, m, p in named(set(names), rev):
        c, score = m["metrics/compress.json"], m["metrics/score.json"]
        tuned = c.get("compressed") and c.get("fine_tune_epochs", 0) > 0
        rows.append(
            (
                list(RUNS).index(names[name]),
                names[name],
                p["student"]["arch"].split(":")[-1],
                score.get("compression", "none"),
                c.get("fine_tune_epochs", 0) if c.get("compressed") else "-",
                score["macs"],
                score["params"],
                c.get("f1_compressed", float("nan")),
                c["val_f1"] if tuned else float("nan"),
                score["f1"],
                score.get("student_f1", score["f1"]),
                score["score"],
            )
        )
    print(
        "| experiment | student | compression | fine-tune epochs | MACs | params | selection F1 compressed "
        "| selection F1 fine-tuned | test F1 | test F1 of the student | score |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows):
        print(
            f"| {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:,} | {r[6]:,} | {r[7]:.4f} | {r[8]:.4f} | {r[9]:.4f} "
            f"| {r[10]:.4f} | {r[11]:.4f} |"
        )


if __name__ == "__main__":
    main()
