"""Wall time of the quick-start pipeline: a forced `dvc repro` of each stage of dvc.yaml in
order (not of data.dvc, which a forced repro would re-hash and re-commit: 70,000 files), then a
`dvc repro` with nothing changed, and whether the forced rerun reproduced the recorded metrics.

Run from the repository root with the venv on PATH (`make bench` does): `python -m benchmarks.pipeline`.
"""

import json
import statistics
import subprocess
import time
from pathlib import Path

import yaml

METRICS = sorted(Path("metrics").glob("*.json"))


def timed(*cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    before = [json.loads(p.read_text()) if p.exists() else None for p in METRICS]
    stages = list(yaml.safe_load(Path("dvc.yaml").read_text())["stages"])
    times = {stage: timed("dvc", "repro", "--force", "--single-item", stage) for stage in stages}
    full = sum(times.values())
    after = [json.loads(p.read_text()) for p in METRICS]
    noop = statistics.median(timed("dvc", "repro") for _ in range(3))
    score = json.loads(Path("metrics/score.json").read_text())
    print(", ".join(f"{stage} {t:.0f} s" for stage, t in times.items()))
    print(f"dvc repro --force --single-item, stage by stage: {full:.1f} s (goal <= 600 s)")
    print(f"dvc repro, nothing changed (median of 3): {noop:.2f} s (goal <= 5 s)")
    print(f"test macro F1 {score['f1']:.4f}, MACs {score['macs']:,}, score {score['score']:.4f}")
    print(f"metrics identical to the recorded run: {before == after}")


if __name__ == "__main__":
    main()
