"""F1 against MACs over DVC experiments: read `dvc exp show --json`, mark the Pareto front
(no other run has fewer or equal MACs and a higher F1), write a CSV for `dvc plots` and a PNG;
and the `dvc exp run --queue` commands that train a shortlist of `tinycls search` candidates."""

import csv
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinycls.errors import InputError

SCORE_FILE = "metrics/score.json"


@dataclass(frozen=True)
class Run:
    name: str  # experiment name, or the commit's short hash
    arch: str
    input_size: int
    macs: int
    f1: float
    score: float
    compression: str
    pareto: bool = False


def runs(show: list[dict[str, Any]]) -> list[Run]:
    """Every commit and experiment of `dvc exp show --json` output that has a score (queued,
    running and failed ones have none); the workspace row is skipped (it repeats a commit)."""
    found = []

    def add(rev: dict[str, Any], name: str) -> None:
        data = rev.get("data") or {}
        score = ((data.get("metrics") or {}).get(SCORE_FILE) or {}).get("data") or {}
        if not {"macs", "f1", "score"} <= set(score):
            return
        found.append(
            Run(
                name=name,
                arch=str(score.get("arch", "")),
                input_size=int(score.get("input_size", 0)),
                macs=int(score["macs"]),
                f1=float(score["f1"]),
                score=float(score["score"]),
                compression=str(score.get("compression", "none")),
            )
        )

    for row in show:
        if row.get("rev") != "workspace":
            add(row, row.get("name") or str(row.get("rev", ""))[:7])
        for exp in row.get("experiments") or []:
            rev = exp["revs"][0]
            add(rev, rev.get("name") or str(rev.get("rev", ""))[:7])
    return found


def mark_front(found: Sequence[Run]) -> list[Run]:
    """The runs sorted by MACs, each marked `pareto` when no run with fewer or equal MACs has a
    higher F1 (ties in MACs: the best F1 alone)."""
    ordered = sorted(found, key=lambda r: (r.macs, -r.f1))
    out, best = [], float("-inf")
    for r in ordered:
        on_front = r.f1 > best
        best = max(best, r.f1)
        out.append(Run(**{**asdict(r), "pareto": on_front}))
    return out


def write_csv(found: Sequence[Run], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(found[0])) if found else ["name"])
        w.writeheader()
        w.writerows(asdict(r) for r in found)


def plot(found: Sequence[Run], path: Path, title: str = "F1 against MACs") -> None:
    """A scatter of every run, the Pareto front as a step line, each point named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ax.scatter([r.macs for r in found], [r.f1 for r in found], color="tab:gray", label="run")
    front = [r for r in found if r.pareto]
    ax.step([r.macs for r in front], [r.f1 for r in front], where="post", color="tab:red", label="Pareto front")
    ax.scatter([r.macs for r in front], [r.f1 for r in front], color="tab:red", zorder=3)
    for r in found:
        ax.annotate(r.name, (r.macs, r.f1), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("MACs (competition's count)")
    ax.set_ylabel("macro F1")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def to_markdown(found: Sequence[Run]) -> str:
    lines = ["| run | arch | px | MACs | F1 | score | compression | front |", "|---|---|---:|---:|---:|---:|---|---|"]
    for r in found:
        lines.append(
            f"| {r.name} | {r.arch} | {r.input_size} | {r.macs:,} | {r.f1:.4f} | {r.score:.4f} | "
            f"{r.compression} | {'*' if r.pareto else ''} |"
        )
    return "\n".join(lines)


def queue_commands(
    rows: Sequence[dict[str, str]], epochs: int, prefix: str = "cand-", extra: Sequence[str] = ()
) -> list[list[str]]:
    """`dvc exp run --queue` commands, one per candidate row (arch, size) of `tinycls search
    --out`: the student at that architecture and input size trained for `epochs`, compression
    off (keep_blocks fit one architecture only), plus any `extra` -S settings.

    Raises:
        ValueError: a row without arch or size, or epochs < 1.
    """
    if epochs < 1:
        raise InputError(f"epochs: {epochs} must be >= 1.")
    cmds = []
    for i, row in enumerate(rows, start=2):  # line numbers of the CSV, after its header
        arch, size = (row.get("arch") or "").strip(), (row.get("size") or "").strip()
        if not arch or not size.isdigit():
            raise InputError(
                f"line {i}: expected columns arch and size (a `tinycls search --out` CSV), got {dict(row)}."
            )
        name = prefix + re.sub(r"[^A-Za-z0-9_-]+", "-", arch.split(":")[-1]) + f"-{size}px"
        cmd = ["dvc", "exp", "run", "--queue", "-n", name, "-S", f"student.arch={arch}", "-S"]
        cmd += [f"student.input_size={size}", "-S", f"student.epochs={epochs}", "-S", "compress.keep_blocks=[]"]
        for setting in extra:
            cmd += ["-S", setting]
        cmds.append(cmd)
    return cmds
