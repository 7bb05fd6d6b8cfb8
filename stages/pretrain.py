"""Stage `pretrain`: pretrain the student's architecture on CIFAR-10, CIFAR-100, both in either
order, or scikit-learn's digits (offline), for the student stage to start from."""

import shutil
from dataclasses import dataclass
from pathlib import Path

from stages.params import PRETRAIN, section, source, value, write_json
from stages.training import ModelParams, train_model
from tinycls.config import from_section, one_of
from tinycls.pretrain import PHASES, SOURCES, load_phase
from tinycls.train import TrainConfig

LIVE = Path("live/pretrain")
METRICS = Path("metrics/pretrain.json")
DATA_KEYS = ("source", "cifar_root", "download", "max_per_class", "input_size")


@dataclass(frozen=True)
class PretrainParams:
    source: str  # one of tinycls.pretrain.SOURCES
    cifar_root: str  # a folder outside data/ holding (or receiving) the CIFAR copies
    download: bool  # fetch CIFAR when it is not under cifar_root (needs network)
    max_per_class: int  # cap on CIFAR images per class, train and val (0 = all)
    input_size: int  # px

    def __post_init__(self) -> None:
        one_of("source", self.source, SOURCES)
        if self.max_per_class < 0:
            raise ValueError(f"max_per_class: {self.max_per_class} must be >= 0 (0 = all).")
        if self.input_size < 8:
            raise ValueError(f"input_size: {self.input_size} must be >= 8.")
        if Path(self.cifar_root).expanduser().resolve().is_relative_to(Path("data").resolve()):
            raise ValueError(
                f"cifar_root: {self.cifar_root!r} is inside data/, which holds your dataset only; "
                "use a folder outside it."
            )


def main() -> None:
    sec = section("pretrain")
    p = from_section(PretrainParams, {k: v for k, v in sec.items() if k in DATA_KEYS}, source("pretrain"))
    cfg = from_section(TrainConfig, {k: v for k, v in sec.items() if k not in DATA_KEYS}, source("pretrain"))
    arch = value("student", "arch")
    shutil.rmtree(PRETRAIN, ignore_errors=True)
    PRETRAIN.mkdir(parents=True)
    # Every dataset is loaded (and checked) before any training time is spent.
    phases = [load_phase(name, Path(p.cifar_root), p.download, p.max_per_class, cfg.seed) for name in PHASES[p.source]]
    m = ModelParams(arch=str(arch), pretrained=False, input_size=p.input_size)
    reports, init = [], None
    for i, data in enumerate(phases):
        checkpoint = PRETRAIN / f"{data.name}.pt"
        r = train_model(
            "pretrain",
            m,
            cfg,
            data.classes,
            data.train,
            data.val,
            checkpoint,
            LIVE,
            None,
            {"dataset": data.name, "classes": len(data.classes), "val_images": len(data.val[0])},
            init=init,
            live_prefix=f"{data.name}/",
            resume_live=i > 0,
        )
        reports.append(r)
        init = checkpoint
    if init is not None:
        init.rename(PRETRAIN / "model.pt")
    else:  # source none: the declared curves folder still gets a file (git keeps no empty folder)
        write_json(LIVE / "metrics.json", {"source": p.source, "trained": False})
    for stale in PRETRAIN.glob("*.pt"):
        if stale.name != "model.pt":
            stale.unlink()
    write_json(PRETRAIN / "source.json", {"source": p.source, "arch": arch})
    write_json(METRICS, {"source": p.source, "val_f1": reports[-1]["val_f1"] if reports else None, "phases": reports})
    print(f"pretrain: {p.source}" + (f" -> {PRETRAIN / 'model.pt'}" if reports else " (nothing to train)"))


if __name__ == "__main__":
    main()
