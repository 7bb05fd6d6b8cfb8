"""The distillation family on the quick start, as one `dvc exp run --queue` sweep: no KD (the
default), vanilla, true-label, two teachers (teacher + assistant), the chain teacher ->
assistant -> student, and true-label without pretraining. Prints a Markdown table for the README.

Run from the repository root with the venv on PATH, on a clean workspace after `dvc repro`:
`python -m benchmarks.kd_sweep`. The experiments stay in `dvc exp show`; the workspace is not
touched (queued experiments run in DVC's temporary workspaces, one at a time).
"""

from benchmarks.experiments import named, require_clean, run_queued

RUNS = {
    "kd-none": ["kd.mode=none"],
    "kd-vanilla": ["kd.mode=vanilla"],
    "kd-true-label": ["kd.mode=true_label"],
    "kd-two-teachers": ["kd.mode=true_label", "kd.teachers=[teacher,assistant]"],
    "kd-chain": ["kd.mode=true_label", "kd.teachers=[assistant]"],
    "kd-true-label-no-pretrain": ["kd.mode=true_label", "pretrain.source=none"],
    "kd-none-no-pretrain": ["kd.mode=none", "pretrain.source=none"],
}


def main() -> None:
    require_clean("kd_sweep", "queued experiments start from HEAD")
    names = run_queued(RUNS, "sweep")
    rows = []
    for name, m, p in named(set(names)):
        student, score = m["metrics/student.json"], m["metrics/score.json"]
        rows.append(
            (
                list(RUNS).index(names[name]),
                name,
                p["kd"]["mode"],
                "+".join(p["kd"]["teachers"]),
                p["pretrain"]["source"],
                student.get("init_transferred", 0),
                student["val_f1"],
                score["f1"],
                score["macs"],
                score["score"],
            )
        )
    print(
        "| experiment | kd.mode | kd.teachers | pretrain.source | tensors transferred | selection F1 "
        "| test F1 | MACs | score |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows):
        print(f"| {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]:.4f} | {r[7]:.4f} | {r[8]:,} | {r[9]:.4f} |")


if __name__ == "__main__":
    main()
