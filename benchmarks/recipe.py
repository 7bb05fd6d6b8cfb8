"""The teacher recipe on the quick start: the student trained on train only, on all labelled
data (the default), and on all data plus pseudo-labelled test, as three DVC experiments shown
side by side. Run from the repository root with the venv on PATH: `python -m benchmarks.recipe`.

It needs a clean git workspace (it refuses otherwise), leaves the three experiments in
`dvc exp show`, and restores the workspace to HEAD afterwards.
"""

import json
import subprocess
import time

RUNS = {
    "train-only": "train",
    "all-data": "train_val",
    "all-data-pseudo": "train_val_and_pseudo_labelled_test",
}


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main() -> None:
    if sh("git", "status", "--porcelain", "--untracked-files=no"):
        raise SystemExit("benchmarks.recipe: commit or stash your changes first; it restores the workspace to HEAD.")
    stamp = time.strftime("%Y%m%d-%H%M%S")  # experiment names must be new
    names = {f"recipe-{name}-{stamp}" for name in RUNS}
    for name, train_on in RUNS.items():  # no --force: only the stages that changed rerun
        sh("dvc", "exp", "run", "-n", f"recipe-{name}-{stamp}", "-S", f"student.train_on={train_on}")
    rows = []
    for row in json.loads(sh("dvc", "exp", "show", "--json")):
        for exp in row.get("experiments") or []:
            rev = exp["revs"][0]
            if rev.get("name") not in names:
                continue
            m = rev["data"]["metrics"]
            score, student = m["metrics/score.json"]["data"], m["metrics/student.json"]["data"]
            rows.append(
                (
                    rev["name"],
                    student["train_on"],
                    student["train_images"],
                    student["val_f1"],
                    score["f1"],
                    score["score"],
                    score["pseudo_label_f1"],
                    m["metrics/pseudo.json"]["data"]["coverage"],
                    m["metrics/teacher.json"]["data"]["val_f1"],
                )
            )
    print(
        "| experiment | student.train_on | train images | selection F1 | test F1 | score | teacher test F1 "
        "| pseudo coverage | teacher val F1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows):
        cells = [r[0], r[1], f"{r[2]:,}", *(f"{v:.4f}" for v in r[3:7]), f"{r[7]:.1%}", f"{r[8]:.4f}"]
        print("| " + " | ".join(cells) + " |")
    sh("git", "checkout", "--", ".")
    sh("dvc", "checkout", "-f")


if __name__ == "__main__":
    main()
