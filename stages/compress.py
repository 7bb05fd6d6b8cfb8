"""Stage `compress`: structured compression of the student (params.yaml [compress]): layer
pruning, group decomposition, Torch-Pruning channel pruning by ratio or to a MACs target; then
fine-tuning with the student's training settings and its kd teachers. With every kind off, the
student passes through unchanged, so `score` always scores artifacts/compress/model.pt."""

import dataclasses
import shutil
from pathlib import Path

from stages.curves import no_curves
from stages.params import CACHE, COMPRESS, PSEUDO, STUDENT, TEACHER, TEACHER_OUTPUTS, run, section, source, write_json
from stages.training import live_log, resumable, split_section
from tinycls.checkpoint import load_checkpoint, save_checkpoint
from tinycls.compress_student import CompressConfig, compress_student
from tinycls.config import from_section
from tinycls.distill import KDConfig
from tinycls.errors import InputError
from tinycls.macs import count_macs
from tinycls.pseudo import DataConfig, PseudoConfig, training_data
from tinycls.run import ModelConfig, train_model
from tinycls.train import TrainConfig

LIVE = Path("live/compress")
METRICS = Path("metrics/compress.json")


def settings() -> tuple[CompressConfig, ModelConfig, TrainConfig, DataConfig, PseudoConfig, KDConfig]:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    p = from_section(CompressConfig, section("compress"), source("compress"))
    m, cfg, other = split_section("student", section("student"), ("train_on", "allow_unmatched_init"))
    data = from_section(DataConfig, other, source("student"))
    pseudo = from_section(PseudoConfig, section("pseudo"), source("pseudo"))
    try:
        kd = p.fine_tune_kd(from_section(KDConfig, section("kd"), source("kd")))
    except InputError as e:
        raise InputError(f"{source('compress')}.{e}") from None
    return p, m, cfg, data, pseudo, kd


def main() -> None:
    p, m, cfg, data, pseudo, kd = settings()
    out = COMPRESS / "model.pt"
    shutil.rmtree(COMPRESS, ignore_errors=True)
    if not p.on:
        student, meta = load_checkpoint(STUDENT)
        macs, n_params = count_macs(student, meta["input_size"])
        COMPRESS.mkdir(parents=True)
        shutil.copyfile(STUDENT, out)
        status = {"compressed": False, "why": "params.yaml [compress] turns every kind off", "macs": macs}
        no_curves(LIVE, status)
        write_json(METRICS, {**status, "params": n_params})
        print(f"compress: off, the student passes through ({macs:,} MACs)")
        return
    classes, train, val, selection = training_data(CACHE, PSEUDO, TEACHER, data.train_on, pseudo)
    student, meta = load_checkpoint(STUDENT, classes=classes, role="student")
    # Every setting is checked here, on the trained student, before any fine-tuning.
    c = compress_student(student, meta, p, train, val, cfg, str(STUDENT))
    extra = {**c.metrics, "selection": selection, "fine_tune_epochs": p.epochs}
    if p.epochs == 0:
        save_checkpoint(out, c.model, {**meta, **c.meta_extra, "stage": "compress"})
        no_curves(LIVE, {"fine_tuned": False})
        write_json(METRICS, {**extra, "val_f1": extra["f1_compressed"]})
        return
    with resumable("compress") as resume, live_log(LIVE) as log:
        metrics = train_model(
            "compress", m, dataclasses.replace(cfg, epochs=p.epochs, lr=p.lr), classes, train, val, out, kd=kd,
            teacher_checkpoints=TEACHER_OUTPUTS, model=c.model, meta_extra=c.meta_extra, log=log,
            resume=resume / "model.pt",
            extra_metrics={"train_on": data.train_on, **extra},
        )  # fmt: skip
    write_json(METRICS, metrics)


if __name__ == "__main__":
    run(main)
