"""Stage `compress`: the student compressed (tinycls.compress_student: layers, groups, channels) and
fine-tuned with its own settings and kd teachers, or passed through when every kind is off."""

import dataclasses
import shutil
from pathlib import Path

from stages.curves import no_curves
from stages.params import CACHE, COMPRESS, PSEUDO, STUDENT, TEACHER, TEACHER_OUTPUTS, section, source
from stages.runner import resumable, run, write_json
from stages.training import live_log, split_section
from tinycls.checkpoint import load_checkpoint, save_checkpoint
from tinycls.compress_student import CompressConfig, compress_student, pass_through
from tinycls.config import from_section
from tinycls.distill import KDConfig
from tinycls.pseudo import DataConfig, PseudoConfig, training_data
from tinycls.run import ModelConfig, Start, train_model
from tinycls.train import TrainConfig

LIVE, METRICS, OUT = Path("live/compress"), Path("metrics/compress.json"), COMPRESS / "model.pt"


def settings() -> tuple[CompressConfig, ModelConfig, TrainConfig, DataConfig, PseudoConfig, KDConfig]:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    p = from_section(CompressConfig, section("compress"), source("compress"))
    m, cfg, (data,) = split_section("student", section("student"), [(DataConfig, ("train_on", "allow_unmatched_init"))])
    pseudo = from_section(PseudoConfig, section("pseudo"), source("pseudo"))
    kd = p.fine_tune_kd(from_section(KDConfig, section("kd"), source("kd")), source("compress"))
    return p, m, cfg, data, pseudo, kd


def main() -> None:
    p, m, cfg, data, pseudo, kd = settings()
    shutil.rmtree(COMPRESS, ignore_errors=True)
    if not p.on:
        status = {"compressed": False, "why": "params.yaml [compress] turns every kind off"}
        no_curves(LIVE, {**status, "macs": (metrics := pass_through(STUDENT, OUT))["macs"]})
        write_json(METRICS, {**status, **metrics})
        return print(f"compress: off, the student passes through ({metrics['macs']:,} MACs)")
    split, selection = training_data(CACHE, PSEUDO, TEACHER, data.train_on, pseudo)
    student, meta = load_checkpoint(STUDENT, classes=split.classes, role="student")
    # Every setting is checked here, on the trained student, before any fine-tuning.
    c = compress_student(student, meta, p, split.train, split.val, cfg, str(STUDENT))
    extra = {**c.metrics, "selection": selection, "fine_tune_epochs": p.epochs}
    if p.epochs == 0:
        save_checkpoint(OUT, c.model, {**meta, **c.meta_extra, "stage": "compress"})
        no_curves(LIVE, {"fine_tuned": False})
        return write_json(METRICS, {**extra, "val_f1": extra["f1_compressed"]})
    with resumable("compress") as resume, live_log(LIVE) as log:
        metrics = train_model(
            "compress", m, dataclasses.replace(cfg, epochs=p.epochs, lr=p.lr), split, OUT,
            start=Start(model=c.model, meta=c.meta_extra), kd=kd, teachers=TEACHER_OUTPUTS, log=log,
            resume=resume / "model.pt",
        )  # fmt: skip
    write_json(METRICS, {**metrics, "train_on": data.train_on, **extra})


if __name__ == "__main__":
    run(main)
