"""The teacher recipe on the quick start: the student trained on train only, on all labelled
data (the default), and on all data plus pseudo-labelled test, as three DVC experiments shown
side by side. Run from the repository root with the venv on PATH: `python -m benchmarks.recipe`.
Writes the table as its block of docs/results/recipe.md.

It needs a clean git workspace (it refuses otherwise; what benchmarks write aside: the results
pages and the README), leaves the three experiments in `dvc exp show`, and restores the workspace
to HEAD afterwards (what benchmarks wrote aside).
"""

from benchmarks.experiments import named, require_clean, sh, stamp
from benchmarks.results import WRITTEN, page

RUNS = {
    "train-only": "train",
    "all-data": "train_val",
    "all-data-pseudo": "train_val_and_pseudo_labelled_test",
}


def main() -> None:
    with page("recipe", title="what the student trains on") as emit:
        require_clean("recipe", "it restores the workspace to HEAD")
        now = stamp()
        names = {f"recipe-{name}-{now}" for name in RUNS}
        for name, train_on in RUNS.items():  # no --force: only the stages that changed rerun
            sh("dvc", "exp", "run", "-n", f"recipe-{name}-{now}", "-S", f"student.train_on={train_on}")
        rows = []
        for name, m, _ in named(names):
            score, student = m["metrics/score.json"], m["metrics/student.json"]
            rows.append(
                (
                    name,
                    student["train_on"],
                    student["train_images"],
                    student["val_f1"],
                    score["f1"],
                    score["score"],
                    score["pseudo_label_f1"],
                    m["metrics/pseudo.json"]["coverage"],
                    m["metrics/teacher.json"]["val_f1"],
                )
            )
        table = [
            "| experiment | student.train_on | train images | selection F1 | test F1 | score | teacher test F1 "
            "| pseudo coverage | teacher val F1 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(rows):
            cells = [r[0], r[1], f"{r[2]:,}", *(f"{v:.4f}" for v in r[3:7]), f"{r[7]:.1%}", f"{r[8]:.4f}"]
            table.append("| " + " | ".join(cells) + " |")
        emit("\n".join(table))
        sh("git", "checkout", "--", ".", *(f":!{p}" for p in WRITTEN))  # pages other benchmarks wrote
        sh("dvc", "checkout", "-f")


if __name__ == "__main__":
    main()
