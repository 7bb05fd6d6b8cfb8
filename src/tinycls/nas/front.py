"""The study's results: the Pareto front of (validation F1, MACs), its table, plot and spec files."""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tinycls.nas.config import NasConfig


@dataclass(frozen=True)
class Found:
    number: int
    val_f1: float
    macs: int
    params: int
    input_size: int
    seconds: float
    spec: dict[str, Any]
    pareto: bool = False


HEADER = "# Found by `tinycls nas`"  # first line of every spec the search writes


def results(study: Any) -> list[Found]:
    """Every trained trial, sorted by MACs, the Pareto front (no trial with fewer or equal MACs
    has a higher F1) marked."""
    from optuna.trial import TrialState

    from tinycls.pareto import mark_front

    rows = {
        t.number: Found(
            t.number,
            float(t.values[0]),
            int(t.values[1]),
            int(t.user_attrs.get("params", 0)),
            int(t.params.get("input_size", 0)),
            float(t.user_attrs.get("seconds", 0.0)),
            t.user_attrs.get("spec", {}),
        )
        for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    }
    front = mark_front(as_runs(rows.values()))  # sorted by MACs, then F1 (highest first)
    return [replace(rows[int(r.name[1:])], pareto=r.pareto) for r in front]


def as_runs(found: Any) -> list:
    """Trials as tinycls.pareto runs (named #number), for its front and plot."""
    from tinycls.pareto import Run

    return [Run(f"#{r.number}", "nas", r.input_size, r.macs, r.val_f1, 0.0, "none", pareto=r.pareto) for r in found]


def chosen(found: list[Found]) -> Found:
    """The front's best validation F1 (ties: fewer MACs): every trial is within the budget."""
    return max((r for r in found if r.pareto), key=lambda r: (r.val_f1, -r.macs))


def spec_yaml(r: Found, cfg: NasConfig, study: str) -> str:
    """The spec of trial `r` as a file `student.arch: nas:<file>` takes, with where it came from."""
    import yaml

    head = (
        f"{HEADER} (study {study!r}, trial {r.number}): proxy validation macro F1 {r.val_f1:.4f}\n"
        f"# ({cfg.train_per_class} train images per class, {cfg.epochs} epochs), {r.macs:,} MACs at "
        f"{r.input_size} px.\n"
        f"# Train it: dvc exp run -S student.arch=nas:<this file> -S student.input_size={r.input_size}\n"
    )
    body = {k: r.spec[k] for k in ("depth_multiple", "width_multiple")}
    text = yaml.safe_dump(body, sort_keys=False)
    text += "backbone:\n" + "".join(
        f"  - {yaml.safe_dump(item, default_flow_style=True).strip()}\n" for item in r.spec["backbone"]
    )
    text += f"head: {r.spec['head']}\n"
    return head + text


def to_markdown(found: list[Found]) -> str:
    """The Pareto front's trials as a Markdown table."""
    lines = ["| trial | val F1 | MACs | params | px | s | modules | front |", "|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in found:
        if not r.pareto:
            continue
        mods = " ".join(f"{n}x{m.replace('InvertedResidual', 'IR')}" for n, m, _ in r.spec.get("backbone", []))
        lines.append(
            f"| {r.number} | {r.val_f1:.4f} | {r.macs:,} | {r.params:,} | {r.input_size} | {r.seconds:.0f} | {mods} | "
            f"{'*' if r.pareto else ''} |"
        )
    return "\n".join(lines)


def write_outputs(
    study: Any, cfg: NasConfig, out_dir: Path, plots: Path, spec_out: Path
) -> tuple[list[Found], Found | None]:
    """trials.csv and pareto.md in `out_dir`, every front trial's spec under out_dir/specs/, the
    plot (pareto.png) and its CSV (for `dvc plots`) in `plots`, the chosen spec at `spec_out`."""
    import csv

    from tinycls.pareto import plot

    found = results(study)
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["number", "val_f1", "macs", "params", "input_size", "seconds", "pareto"]
    for path in (out_dir / "trials.csv", plots / "nas_pareto.csv"):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows({k: getattr(r, k) for k in fields} for r in found)
    (out_dir / "pareto.md").write_text(to_markdown(found) + "\n")
    if not found:
        return found, None
    plot(as_runs(found), plots / "nas_pareto.png")
    (out_dir / "specs").mkdir(exist_ok=True)
    for old in (out_dir / "specs").glob("trial_*.yaml"):  # the search's own, of trials that may have left the front
        if old.read_text(errors="replace").startswith(HEADER):  # nothing else there (`--out-dir .`: specs/) goes
            old.unlink()
    for r in found:
        if r.pareto:
            (out_dir / "specs" / f"trial_{r.number}.yaml").write_text(spec_yaml(r, cfg, cfg.study))
    best = chosen(found)
    spec_out.parent.mkdir(parents=True, exist_ok=True)
    spec_out.write_text(spec_yaml(best, cfg, cfg.study))
    return found, best
