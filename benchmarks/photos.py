"""The pipeline on real photos at their native size, the way a user brings their own: the flower
photos of TensorFlow's tutorials (3,670 JPEGs of 5 kinds, about 240x180 to 500x375 px), from a
public GitHub mirror (`git clone` once into ~/.cache/tinycls/flower_photos; --root: a folder that
already holds them, as class folders anywhere below it). Byte-identical duplicates are dropped,
then a seeded sample of --per-class photos per class is written as the original JPEG files into
data/flowers/{train,test}/<class>/ (--test-per-class of them labelled test) of a fresh clone of
this repository, `dvc add data`, and for each setting: `tinycls preset photos` (the README's one
step for photos), the setting's own changes, `dvc repro`, with the time of every stage.

Settings: `photos` (the preset as it is), `photos-no-kd` (the same student without
distillation: the reference for the share of the teacher's lead the student keeps), and any
`--set key=value,...` run tagged `--tag`. Writes a Markdown table as the block of
docs/results/photos.md named after --settings and --set (e.g. `settings photos,photos-no-kd`).

Run from the repository root with the venv on PATH:
`python -m benchmarks.photos [--root DIR] [--workdir DIR] [--settings photos,photos-no-kd]`.
This workspace is not touched: the clone (default: a temporary folder) holds the data, the DVC
cache and the runs.
"""

import argparse
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.results import page
from tinycls.presets import apply

URL = "https://github.com/Oldpel/flower_photos"  # TensorFlow's flower_photos, as class folders
CACHE = Path("~/.cache/tinycls/flower_photos").expanduser()
DATASET = "flowers"
CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
SETTINGS = {"photos": {}, "photos-no-kd": {"kd.mode": "none"}}
METRICS = ("teacher", "student", "score", "export")


def photo_root(root: str | None) -> Path:
    """`root`, or the mirror cloned once into CACHE (the way a user online gets it)."""
    if root:
        return Path(root)
    if not CACHE.exists():
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "-q", "--depth", "1", URL, str(CACHE)], check=True)
    return CACHE


def collect(root: Path) -> dict[str, list[Path]]:
    """{class: JPEG files} from every folder named after a class below `root`, byte-identical
    copies dropped (the mirror has a few; `prepare` refuses one in test and train alike)."""
    seen: set[str] = set()
    out: dict[str, list[Path]] = {c: [] for c in CLASSES}
    for path in sorted(root.rglob("*.jpg")):
        if path.parent.name in out and (digest := hashlib.sha256(path.read_bytes()).hexdigest()) not in seen:
            seen.add(digest)
            out[path.parent.name].append(path)
    if empty := [c for c, files in out.items() if not files]:
        raise SystemExit(f"{root}: no .jpg files in folders named {empty}; --root takes the flower photos' folder.")
    return out


def write_data(clone: Path, files: dict[str, list[Path]], per_class: int, test: int, seed: int) -> dict[str, int]:
    """data/<DATASET>/{train,test}/<class>/ with a seeded sample of each class; the counts."""
    counts = {}
    for cls, paths in files.items():
        chosen = random.Random(f"{seed}-{cls}").sample(paths, min(per_class, len(paths)))
        for split, part in (("test", chosen[:test]), ("train", chosen[test:])):
            folder = clone / "data" / DATASET / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for p in part:
                (folder / p.name).write_bytes(p.read_bytes())
            counts[f"{split}/{cls}"] = len(part)
    return counts


def repro(clone: Path) -> dict[str, float]:
    """`dvc repro` in `clone`; seconds per stage that ran (from the lines DVC prints as it goes)."""
    times, stage, start = {}, None, time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro"], cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    for line in proc.stdout:
        log.append(line)
        if line.startswith("Running stage '"):
            now = time.perf_counter()
            if stage:
                times[stage] = now - start
            stage, start = line.split("'")[1], now
    if proc.wait() != 0:
        sys.stdout.write("".join(log[-40:]))
        raise SystemExit(f"dvc repro failed in {clone}")
    if stage:
        times[stage] = time.perf_counter() - start
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", help=f"the flower photos (default: git clone {URL} into {CACHE})")
    ap.add_argument("--workdir", help="where the clone goes (default: a temporary folder, removed)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"some of {', '.join(SETTINGS)}")
    ap.add_argument("--set", default="", help="extra run: key=value,... on top of the preset")
    ap.add_argument("--tag", default="custom", help="the name of the --set run")
    ap.add_argument("--per-class", type=int, default=500, help="photos per class (500: 2,500 photos)")
    ap.add_argument("--test-per-class", type=int, default=100, help="labelled test photos per class")
    args = ap.parse_args()
    settings = {s: SETTINGS[s] for s in args.settings.split(",") if s}
    if unknown := [s for s in args.settings.split(",") if s and s not in SETTINGS]:
        raise SystemExit(f"--settings: unknown {unknown}; valid: {', '.join(SETTINGS)}")
    if args.set:
        settings[args.tag] = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set.split(","))}
    block = f"settings {args.settings}" + (f"; set {args.set} as {args.tag}" if args.set else "")
    with page("photos", block, title="the photo preset on flower photos") as emit:
        files = collect(photo_root(args.root))
        with tempfile.TemporaryDirectory() as tmp:
            clone = Path(args.workdir or tmp) / "tinycls"
            subprocess.run(["git", "clone", "-q", str(Path.cwd()), str(clone)], check=True)
            print(f"{DATASET}: {write_data(clone, files, args.per_class, args.test_per_class, 0)}", flush=True)
            run = lambda *cmd: subprocess.run(cmd, cwd=clone, check=True, stdout=subprocess.DEVNULL)  # noqa: E731
            run("dvc", "add", "-q", "data")
            pristine = (clone / "params.yaml").read_text()
            rows = []
            for name, changes in settings.items():
                (clone / "params.yaml").write_text(pristine)
                run("tinycls", "preset", "photos")
                overrides = {"prepare.dataset": DATASET, **changes}
                apply(overrides, clone / "params.yaml", name)
                times = repro(clone)
                m = {k: json.loads((clone / "metrics" / f"{k}.json").read_text()) for k in METRICS}
                (clone.parent / f"metrics-{name}.json").write_text(json.dumps({**m, "seconds": times}, indent=1))
                rows.append((name, overrides, m, times))
                stages = json.dumps({k: round(v) for k, v in times.items()})
                print(f"{name}: {m['score']['f1']:.4f} test F1, stage seconds {stages}", flush=True)
        table = [
            "| setting | teacher test F1 (pseudo labels) | student test F1 | MACs | score | `dvc repro` s | slowest |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, _, m, times in rows:
            s = m["score"]
            slow = ", ".join(f"{k} {v:.0f}" for k, v in sorted(times.items(), key=lambda kv: -kv[1])[:3])
            table.append(
                f"| {name} | {s['pseudo_label_f1']:.4f} | {s['student_f1']:.4f} | {s['macs']:,} | {s['score']:.4f} "
                f"| {sum(times.values()):.0f} | {slow} |"
            )
        emit("\n".join(table))
        by = {name: m["score"]["student_f1"] for name, _, m, _ in rows}
        teacher = {name: m["score"]["pseudo_label_f1"] for name, _, m, _ in rows}
        if "photos" in by and "photos-no-kd" in by and teacher["photos"] > by["photos-no-kd"]:
            kept = (by["photos"] - by["photos-no-kd"]) / (teacher["photos"] - by["photos-no-kd"])
            emit(f"The preset's student keeps {kept:.0%} of its teacher's lead over the same student without KD.")


if __name__ == "__main__":
    main()
