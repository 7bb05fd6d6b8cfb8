"""The distillation family on the quick start, as one `dvc exp run --queue` sweep over student
seeds: no KD, vanilla, true-label (the default), two teachers (teacher + assistant), and the
chain teacher -> assistant -> student. Writes a Markdown table of mean +- std over the seeds
(a fresh clone on another machine moved one run's test F1 by 0.015: single runs mislead), the
same paired by seed, and how the selection F1 ranks the runs, as the block of
docs/results/kd_sweep.md named after the flags (e.g. `variants default,none; seeds 0,1,2; set
student.epochs=40`).

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
from benchmarks.results import page

VARIANTS = {
    "default": [],  # params.yaml as committed
    "none": ["kd.mode=none"],
    "cached": ["kd.teacher_outputs=cached"],  # the teacher's answer for the unaugmented image
    "per-batch": ["kd.teacher_outputs=per_batch"],
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


def paired_table(
    by_seed: dict[str, dict[int, float]], variants: list[str], seeds: list[int], reference: str
) -> list[str]:
    """Each variant's student test F1 minus the reference's at the same seed (same data order and
    initial weights): the seed-to-seed spread cancels, which a mean +- std does not show. The
    sentence and the table (none when no variant shares a seed with the reference)."""
    ref = by_seed.get(reference, {})
    common = [s for s in seeds if s in ref]
    others = [v for v in variants if v != reference]
    if not common or not others:
        return []
    refs = ", ".join(f"{ref[s]:.4f}" for s in common)
    intro = f"Student test F1 paired by seed against {reference} ({refs} at seeds {', '.join(map(str, common))}):"
    table = [f"| variant | {' | '.join(f'seed {s}' for s in common)} | mean +- std |"]
    table.append("|---|" + "---|" * (len(common) + 1))
    for v in others:
        diffs = [by_seed[v][s] - ref[s] if s in by_seed[v] else None for s in common]
        cells = [f"{d:+.4f}" if d is not None else "" for d in diffs]
        done = [d for d in diffs if d is not None]
        spread = f" +- {statistics.stdev(done):.4f}" if len(done) > 1 else ""
        table.append(f"| {v} | {' | '.join(cells)} | {statistics.mean(done):+.4f}{spread} |")
    return [intro, "\n".join(table)]


def gap_closed(by_seed: dict[str, dict[int, float]], teacher: dict[int, float], variants: list[str]) -> list[str]:
    """How much of the teacher's lead over the student trained without KD each variant keeps:
    (student - student without KD) / (teacher - student without KD), per seed. The sentence and
    the table (none without a run of `none` that the teacher beats)."""
    none = by_seed.get("none", {})
    seeds = sorted(s for s in none if s in teacher and teacher[s] > none[s])
    if not seeds:
        return []
    intro = "Share of the teacher's lead kept, (student - no KD) / (teacher - no KD), paired by seed:"
    table = [f"| variant | {' | '.join(f'seed {s}' for s in seeds)} | mean |", "|---|" + "---|" * (len(seeds) + 1)]
    for v in variants:
        if v == "none":
            continue
        share = [(by_seed[v][s] - none[s]) / (teacher[s] - none[s]) if s in by_seed[v] else None for s in seeds]
        done = [x for x in share if x is not None]
        cells = [f"{x:.0%}" if x is not None else "" for x in share]
        table.append(f"| {v} | {' | '.join(cells)} | {statistics.mean(done):.0%} |")
    return [intro, "\n".join(table)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="student.seed values, comma-separated")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {', '.join(VARIANTS)}")
    ap.add_argument("--collect", help="commits whose sweep experiments to tabulate; queues nothing")
    ap.add_argument("--pool", action="store_true", help="with --collect: one row per variant over all the commits")
    ap.add_argument("--set", default="", help="-S settings for every run, comma-separated (e.g. student.epochs=40)")
    ap.add_argument("--tag", default="", help="a name part for the runs of one --set (e.g. e40)")
    ap.add_argument("--reference", default="default", help="the variant the others are paired against")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"--variants: unknown {unknown}; valid: {', '.join(VARIANTS)}")
    tag = f"{args.tag}-" if args.tag else ""
    key_of = {f"kd-{v.replace('_', '-')}-{tag}s{s}": (v, s) for s in seeds for v in variants}  # seed-major
    common = [x for x in args.set.split(",") if x]
    block = [f"variants {'all' if variants == list(VARIANTS) else ','.join(variants)}", f"seeds {args.seeds}"]
    block += [f"set {args.set}"] if args.set else []
    block += [f"reference {args.reference}"] if args.reference != "default" else []
    block += [f"collect {args.collect}{' pooled' if args.pool else ''}"] if args.collect else []
    with page("kd_sweep", "; ".join(block), title="distillation over seeds") as emit:
        if args.collect:
            revs = [sh("git", "rev-parse", r).strip() for r in args.collect.split(",")]
            found = [(rev[:7], *exp) for rev in revs for exp in named(None, rev)]
        else:
            require_clean("kd_sweep", "queued experiments start from HEAD")
            rev = head()
            runs = {key: [*common, *VARIANTS[v], f"student.seed={s}"] for key, (v, s) in key_of.items()}
            names = run_queued(runs, "kd_sweep")
            found = [(rev[:7], *exp) for exp in named(set(names), rev)]
        rows: dict[tuple[str, str], dict[str, list[float]]] = {}
        revs_of: dict[tuple[str, str], set[str]] = {}
        by_selection: dict[str, list[tuple[float, float]]] = {}
        by_seed: dict[str, dict[int, float]] = {}  # variant -> seed -> student test F1 (the first run found)
        teacher: dict[int, float] = {}  # seed -> the teacher's test F1 (its pseudo labels)
        for rev, name, m, _ in found:
            match = re.fullmatch(r"(kd-.+-s\d+)-\d{8}-\d{6}", name)
            if not match or match[1] not in key_of:
                continue
            variant, seed = key_of[match[1]]
            key = (variant, "" if args.pool else rev)
            revs_of.setdefault(key, set()).add(rev)
            columns = rows.setdefault(key, {c: [] for c in COLUMNS})
            by_seed.setdefault(variant, {}).setdefault(seed, m["metrics/score.json"]["student_f1"])
            if "pseudo_label_f1" in m["metrics/score.json"]:
                teacher.setdefault(seed, m["metrics/score.json"]["pseudo_label_f1"])
            for column, (file, key) in COLUMNS.items():
                columns[column].append(m[file][key])
            selection = m["metrics/student.json"]["selection"].split(":")[0].split(" (")[0]
            by_selection.setdefault(selection, []).append(
                (m["metrics/student.json"]["val_f1"], m["metrics/score.json"]["student_f1"])
            )
        table = [f"| variant (`-S` flags) | queued from | runs | {' | '.join(COLUMNS)} |"]
        table.append("|---|---|---|" + "---|" * len(COLUMNS))
        for (v, rev), columns in sorted(rows.items(), key=lambda r: (variants.index(r[0][0]), r[0][1])):
            cells = [mean_std(columns[c]) for c in COLUMNS]
            revs = ", ".join(sorted(revs_of[(v, rev)]))
            flags = " ".join([*common, *VARIANTS[v]]) or "params.yaml"
            table.append(f"| {v} (`{flags}`) | {revs} | {len(columns['final score'])} | {' | '.join(cells)} |")
        emit("\n".join(table))
        found_variants = [v for v in variants if v in by_seed]
        paired = paired_table(by_seed, found_variants, seeds, args.reference)
        for part in [*paired, *gap_closed(by_seed, teacher, found_variants)]:
            emit(part)
        emit("How the selection F1 ranks the runs against their test F1 (the student's, before compression):")
        table = ["| selection | runs | Spearman rho | Kendall tau |", "|---|---|---|---|"]
        for selection, pairs in sorted(by_selection.items()):
            if len(pairs) < 3:
                table.append(f"| {selection} | {len(pairs)} | - | - |")
                continue
            sel, test = zip(*pairs, strict=True)
            table.append(
                f"| {selection} | {len(pairs)} | {spearmanr(sel, test)[0]:.2f} | {kendalltau(sel, test)[0]:.2f} |"
            )
        emit("\n".join(table))


if __name__ == "__main__":
    main()
