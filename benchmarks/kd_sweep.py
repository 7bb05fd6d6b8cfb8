"""The distillation family on the quick start, as one `dvc exp run --queue` sweep over student
seeds: no KD, vanilla, true-label (the default), two teachers (teacher + assistant), and the
chain teacher -> assistant -> student. Prints a Markdown table of mean +- std over the seeds
(a fresh clone on another machine moved one run's test F1 by 0.015: single runs mislead).

Run from the repository root with the venv on PATH, on a clean workspace after `dvc repro`:
`python -m benchmarks.kd_sweep [--seeds 0,1,2] [--variants none,true_label]`. The experiments
stay in `dvc exp show`; the workspace is not touched (queued experiments run in DVC's
temporary workspaces, one at a time, seed by seed: a sweep stopped early has every variant at
the first seeds). `--collect REV[,REV...]` queues nothing and tabulates the sweep experiments
already run from those commits (one row per variant and commit; `--pool`: one per variant, for
commits whose pipeline trains the same student): for a sweep stopped early with `dvc queue
kill` and finished from a later commit, or to put sweeps from several commits side by side.
"""

import argparse
import re
import statistics

from scipy.stats import kendalltau, spearmanr

from benchmarks.experiments import head, named, require_clean, run_queued, sh

VARIANTS = {
    "none": ["kd.mode=none"],
    "vanilla": ["kd.mode=vanilla"],
    "true_label": ["kd.mode=true_label"],
    "two-teachers": ["kd.mode=true_label", "kd.teachers=[teacher,assistant]"],
    "chain": ["kd.mode=true_label", "kd.teachers=[assistant]"],
    # val picks the epochs (the student trains on train only): the other selection, for item 5's
    # question of which one ranks runs like their test F1 does
    "val-selected": ["kd.mode=true_label", "student.train_on=train"],
}
COLUMNS = {  # column -> (metrics file, key)
    "selection F1": ("metrics/student.json", "val_f1"),
    "student test F1": ("metrics/score.json", "student_f1"),
    "final test F1": ("metrics/score.json", "f1"),
    "final score": ("metrics/score.json", "score"),
    "student score (uncompressed)": ("metrics/score.json", "student_score"),
}


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def paired_table(by_seed: dict[str, dict[int, float]], variants: list[str], seeds: list[int]) -> None:
    """Each variant's student test F1 minus true_label's at the same seed (same data order and
    initial weights): the seed-to-seed spread cancels, which a mean +- std does not show."""
    ref = by_seed.get("true_label", {})
    common = [s for s in seeds if s in ref]
    others = [v for v in variants if v != "true_label"]
    if not common or not others:
        return
    refs = ", ".join(f"{ref[s]:.4f}" for s in common)
    print(f"\nStudent test F1 paired by seed against true_label ({refs} at seeds {', '.join(map(str, common))}):\n")
    print(f"| variant | {' | '.join(f'seed {s}' for s in common)} | mean |")
    print("|---|" + "---|" * (len(common) + 1))
    for v in others:
        diffs = [by_seed[v][s] - ref[s] if s in by_seed[v] else None for s in common]
        cells = [f"{d:+.4f}" if d is not None else "" for d in diffs]
        done = [d for d in diffs if d is not None]
        print(f"| {v} | {' | '.join(cells)} | {statistics.mean(done):+.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="student.seed values, comma-separated")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {', '.join(VARIANTS)}")
    ap.add_argument("--collect", help="commits whose sweep experiments to tabulate; queues nothing")
    ap.add_argument("--pool", action="store_true", help="with --collect: one row per variant over all the commits")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"--variants: unknown {unknown}; valid: {', '.join(VARIANTS)}")
    key_of = {f"kd-{v.replace('_', '-')}-s{s}": (v, s) for s in seeds for v in variants}  # seed-major
    if args.collect:
        revs = [sh("git", "rev-parse", r).strip() for r in args.collect.split(",")]
        found = [(rev[:7], *exp) for rev in revs for exp in named(None, rev)]
    else:
        require_clean("kd_sweep", "queued experiments start from HEAD")
        rev = head()
        runs = {key: [*VARIANTS[v], f"student.seed={s}"] for key, (v, s) in key_of.items()}
        names = run_queued(runs, "kd_sweep")
        found = [(rev[:7], *exp) for exp in named(set(names), rev)]
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    revs_of: dict[tuple[str, str], set[str]] = {}
    by_selection: dict[str, list[tuple[float, float]]] = {}
    by_seed: dict[str, dict[int, float]] = {}  # variant -> seed -> student test F1 (the first run found)
    for rev, name, m, _ in found:
        match = re.fullmatch(r"(kd-.+-s\d+)-\d{8}-\d{6}", name)
        if not match or match[1] not in key_of:
            continue
        variant, seed = key_of[match[1]]
        key = (variant, "" if args.pool else rev)
        revs_of.setdefault(key, set()).add(rev)
        columns = rows.setdefault(key, {c: [] for c in COLUMNS})
        by_seed.setdefault(variant, {}).setdefault(seed, m["metrics/score.json"]["student_f1"])
        for column, (file, key) in COLUMNS.items():
            columns[column].append(m[file][key])
        selection = m["metrics/student.json"]["selection"].split(":")[0].split(" (")[0]
        by_selection.setdefault(selection, []).append(
            (m["metrics/student.json"]["val_f1"], m["metrics/score.json"]["student_f1"])
        )
    print(f"| variant (`-S` flags) | queued from | runs | {' | '.join(COLUMNS)} |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for (v, rev), columns in sorted(rows.items(), key=lambda r: (variants.index(r[0][0]), r[0][1])):
        cells = [mean_std(columns[c]) for c in COLUMNS]
        revs = ", ".join(sorted(revs_of[(v, rev)]))
        print(f"| {v} (`{' '.join(VARIANTS[v])}`) | {revs} | {len(columns['final score'])} | {' | '.join(cells)} |")
    paired_table(by_seed, [v for v in variants if v in by_seed], seeds)
    print("\nHow the selection F1 ranks the runs against their test F1 (the student's, before compression):\n")
    print("| selection | runs | Spearman rho | Kendall tau |\n|---|---|---|---|")
    for selection, pairs in sorted(by_selection.items()):
        if len(pairs) < 3:
            print(f"| {selection} | {len(pairs)} | - | - |")
            continue
        sel, test = zip(*pairs, strict=True)
        print(f"| {selection} | {len(pairs)} | {spearmanr(sel, test)[0]:.2f} | {kendalltau(sel, test)[0]:.2f} |")


if __name__ == "__main__":
    main()
