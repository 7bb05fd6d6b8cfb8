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
from tinycls.text import md, plot_label

# the headline DVC shows as metrics; commits before it existed declared the whole score file
SCORE_FILES = ("metrics/headline.json", "metrics/score.json")


@dataclass(frozen=True)
class Run:
    name: str  # experiment name, or the commit's short hash
    arch: str
    input_size: int
    macs: int
    f1: float
    score: float
    compression: str
    latency_ms: float | None = None  # ONNX Runtime, batch 1, one thread, p50 (runs with an export stage)
    onnx_bytes: int | None = None
    pareto: bool = False


# what `tinycls pareto --x` can put on the x axis: the Run field and its axis label
AXES = {
    "macs": ("macs", "MACs (competition's count)"),
    "latency": ("latency_ms", "ONNX Runtime latency, ms (batch 1, one thread, p50)"),
    "size": ("onnx_bytes", "ONNX file size, bytes"),
}


def run_name(rev: dict[str, Any]) -> str:
    """How a row of `dvc exp show --json` is named here: its experiment or branch name, else
    the commit's short hash; the workspace row is "workspace"."""
    rev_id = str(rev.get("rev", ""))
    return rev.get("name") or (rev_id if rev_id == "workspace" else rev_id[:7])


def runs(show: list[dict[str, Any]], workspace: bool = False) -> list[Run]:
    """Every commit and experiment of `dvc exp show --json` output that has a score (queued,
    running and failed ones have none); the workspace row only when `workspace` (it usually
    repeats a commit)."""
    found = []

    def add(rev: dict[str, Any], name: str) -> None:
        data = rev.get("data") or {}
        metrics = data.get("metrics") or {}
        score = next(((metrics.get(f) or {}).get("data") or {} for f in SCORE_FILES if f in metrics), {})
        if not {"macs", "f1", "score"} <= set(score) or score["f1"] is None:  # None: no honest F1 (evaluate)
            return
        student = (((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}).get("student") or {}
        found.append(
            Run(
                name=name,
                arch=str(score.get("arch", student.get("arch", ""))),
                input_size=int(score.get("input_size", student.get("input_size", 0))),
                macs=int(score["macs"]),
                f1=float(score["f1"]),
                score=float(score["score"]),
                compression=str(score.get("compression", "none")),
                latency_ms=float(score["latency_ms"]) if "latency_ms" in score else None,
                onnx_bytes=int(score["onnx_bytes"]) if "onnx_bytes" in score else None,
            )
        )

    for row in show:
        if workspace or row.get("rev") != "workspace":
            add(row, run_name(row))
        for exp in row.get("experiments") or []:
            # a queued or running experiment is listed with its baseline's metrics: not a run yet
            if (exp.get("executor") or {}).get("state", "success") != "success":
                continue
            add(exp["revs"][0], run_name(exp["revs"][0]))
    return found


def mark_front(found: Sequence[Run], x: str = "macs") -> list[Run]:
    """The runs sorted by cost `x` (macs | latency | size: AXES), each marked `pareto` when no run
    with less or equal cost has a higher F1 (ties: the best F1 alone). Runs without that cost
    (made before the export stage existed) are left out.

    Raises:
        InputError: an unknown axis.
    """
    if x not in AXES:
        raise InputError(f"x axis {x!r}: expected one of {', '.join(AXES)}.")
    field = AXES[x][0]
    ordered = sorted((r for r in found if getattr(r, field) is not None), key=lambda r: (getattr(r, field), -r.f1))
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


def plot(found: Sequence[Run], path: Path, x: str = "macs", highlight: Sequence[str] = ()) -> None:
    """A scatter of every run against cost `x` (AXES), the Pareto front as a step line, each point
    named; the runs named in `highlight` ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    field, label = AXES[x]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ax.scatter([getattr(r, field) for r in found], [r.f1 for r in found], color="tab:gray", label="run")
    front = [r for r in found if r.pareto]
    xs = [getattr(r, field) for r in front]
    ax.step(xs, [r.f1 for r in front], where="post", color="tab:red", label="Pareto front")
    ax.scatter(xs, [r.f1 for r in front], color="tab:red", zorder=3)
    ringed = [r for r in found if r.name in highlight]
    if ringed:
        xs, ys = [getattr(r, field) for r in ringed], [r.f1 for r in ringed]
        ringed_label = plot_label(", ".join(highlight))
        ax.scatter(xs, ys, s=160, facecolors="none", edgecolors="tab:blue", linewidths=1.5, label=ringed_label)
    for r in found:
        at = (getattr(r, field), r.f1)
        ax.annotate(plot_label(r.name), at, fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(label)
    ax.set_ylabel("macro F1")
    ax.set_title(f"F1 against {x}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def to_markdown(found: Sequence[Run]) -> str:
    lines = [
        "| run | arch | px | MACs | latency ms | ONNX bytes | F1 | score | compression | front |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in found:
        ms = f"{r.latency_ms:.3f}" if r.latency_ms is not None else ""
        size = f"{r.onnx_bytes:,}" if r.onnx_bytes is not None else ""
        lines.append(
            f"| {md(r.name)} | {md(r.arch)} | {r.input_size} | {r.macs:,} | {ms} | {size} | {r.f1:.4f} | "
            f"{r.score:.4f} | {r.compression} | {'*' if r.pareto else ''} |"
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
