"""Stage `student`: train the small student on the prepared cache (plain loss for now)."""

from dataclasses import dataclass
from pathlib import Path

from dvclive import Live

from stages.params import section, source, write_json
from tinycls.config import from_section, one_of
from tinycls.models import build_model
from tinycls.prepare import load_classes, load_split
from tinycls.train import TrainConfig, fit, seed_everything
from tinycls.transforms import IMAGENET_MEAN, IMAGENET_STD

CACHE = Path("artifacts/prepare")
CHECKPOINT = Path("artifacts/student/model.pt")
LIVE = Path("live/student")
METRICS = Path("metrics/student.json")
MODEL_KEYS = ("arch", "pretrained", "input_size")
KD_MODES = ("none",)  # vanilla and true_label arrive with the distillation issue


@dataclass(frozen=True)
class ModelParams:
    arch: str  # SOURCE:NAME, e.g. pytorchcv:shufflenet_g3_wd4
    pretrained: bool  # ImageNet weights from the source (needs network or a local cache)
    input_size: int  # px; the strongest MACs lever

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size: {self.input_size} must be >= 8.")


@dataclass(frozen=True)
class KDParams:
    mode: str

    def __post_init__(self) -> None:
        one_of("mode", self.mode, KD_MODES)


def main() -> None:
    params = section("student")
    m = from_section(ModelParams, {k: params[k] for k in MODEL_KEYS if k in params}, source("student"))
    cfg = from_section(TrainConfig, {k: v for k, v in params.items() if k not in MODEL_KEYS}, source("student"))
    from_section(KDParams, section("kd"), source("kd"))
    classes = load_classes(CACHE)
    seed_everything(cfg.seed)  # before the build: the seed fixes the initial weights too
    model = build_model(m.arch, len(classes), pretrained=m.pretrained)
    meta = {
        "arch": m.arch,
        "arch_kwargs": {},
        "classes": classes,
        "input_size": m.input_size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "stage": "student",
    }
    with Live(str(LIVE), dvcyaml=False, save_dvc_exp=False) as live:

        def log(row: dict[str, float]) -> None:
            for k, v in row.items():
                live.log_metric(k, v)
            live.next_step()

        result = fit(model, load_split(CACHE, "train"), load_split(CACHE, "val"), cfg, CHECKPOINT, meta, log=log)
    write_json(
        METRICS,
        {
            "val_f1": result.best_f1,
            "best_epoch": result.best_epoch,
            "epochs": result.epochs_run,
            "device": result.device,
        },
    )
    print(f"student: best val macro F1 {result.best_f1:.4f} at epoch {result.best_epoch} -> {CHECKPOINT}")


if __name__ == "__main__":
    main()
