"""Stage `pretrain`: pretrain the student's architecture on CIFAR-10, CIFAR-100, both in either
order, or scikit-learn's digits (offline), for the student stage to start from."""

import shutil
from pathlib import Path

from stages.curves import no_curves
from stages.params import PRETRAIN, section, source, value
from stages.runner import primary, resumable, run, write_json
from stages.training import live_log
from tinycls.cache import Split
from tinycls.config import from_sections
from tinycls.distributed import primary_first
from tinycls.pretrain import DATA_KEYS, PHASES, PretrainConfig, load_phase
from tinycls.run import ModelConfig, Start, train_model
from tinycls.train import TrainConfig

LIVE = Path("live/pretrain")
METRICS = Path("metrics/pretrain.json")


def settings() -> tuple[PretrainConfig, TrainConfig, str]:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    sec = section("pretrain")
    data, loop = {k: v for k, v in sec.items() if k in DATA_KEYS}, {k: v for k, v in sec.items() if k not in DATA_KEYS}
    p, cfg = from_sections([(PretrainConfig, data), (TrainConfig, loop)], source("pretrain"))
    return p, cfg, str(value("student", "arch"))


def main() -> None:
    p, cfg, arch = settings()
    if primary():  # torchrun's other ranks only train
        shutil.rmtree(PRETRAIN, ignore_errors=True)
    with primary_first(cfg.device):  # every dataset loaded (and checked) before any training; rank 0 downloads
        phases = [load_phase(n, Path(p.cifar_root), p.download, p.max_per_class, cfg.seed) for n in PHASES[p.source]]
    m, reports, init = ModelConfig(arch=arch, pretrained=False, input_size=p.input_size), [], None
    with resumable("pretrain") as resume:  # a rerun after an interruption skips the finished phases
        for i, data in enumerate(phases):
            checkpoint = PRETRAIN / f"{data.name}.pt"
            split, start, state = Split(data.classes, data.train, data.val), Start(init=init), resume / checkpoint.name
            with live_log(LIVE, prefix=f"{data.name}/", resume=i > 0) as log:
                r = train_model("pretrain", m, cfg, split, checkpoint, start=start, log=log, resume=state)
            reports.append({**r, "dataset": data.name, "classes": len(data.classes), "val_images": len(data.val[0])})
            init = checkpoint
    if not primary():
        return
    if init is not None:
        init.rename(PRETRAIN / "model.pt")
    else:  # source none: header-only curves, so the declared folder loads
        no_curves(LIVE, {"source": p.source, "trained": False})
    for stale in PRETRAIN.glob("*.pt"):
        if stale.name != "model.pt":
            stale.unlink()
    write_json(PRETRAIN / "source.json", {"source": p.source, "arch": arch})
    write_json(METRICS, {"source": p.source, "val_f1": reports[-1]["val_f1"] if reports else None, "phases": reports})
    print(f"pretrain: {p.source}" + (f" -> {PRETRAIN / 'model.pt'}" if reports else " (nothing to train)"))


if __name__ == "__main__":
    run(main)
