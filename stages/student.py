"""Stage `student`: train the small student on train, train + val, or train + val +
pseudo-labelled test (params), starting from the pretrain stage's weights when there are any,
distilling from the teacher, the assistant, or both (params.yaml [kd])."""

from pathlib import Path

from stages.params import CACHE, PRETRAIN, PSEUDO, STUDENT, TEACHER, TEACHER_OUTPUTS, run, section, source, write_json
from stages.training import live_log, resumable, split_section
from tinycls.config import from_section
from tinycls.distill import KDConfig
from tinycls.errors import InputError
from tinycls.pseudo import DataConfig, PseudoConfig, training_data
from tinycls.run import ModelConfig, train_model
from tinycls.train import TrainConfig

LIVE = Path("live/student")
METRICS = Path("metrics/student.json")


def settings() -> tuple[ModelConfig, TrainConfig, DataConfig, PseudoConfig, KDConfig]:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    m, cfg, other = split_section("student", section("student"), ("train_on", "allow_unmatched_init"))
    data = from_section(DataConfig, other, source("student"))
    pseudo = from_section(PseudoConfig, section("pseudo"), source("pseudo"))
    kd = from_section(KDConfig, section("kd"), source("kd"))
    if "student" in kd.teachers:
        raise InputError(
            f"{source('kd')}.teachers: {kd.teachers}: the student cannot teach itself; list it in "
            "compress.kd_teachers to distil the compressed student from the uncompressed one."
        )
    return m, cfg, data, pseudo, kd


def main() -> None:
    m, cfg, data, pseudo, kd = settings()
    init = PRETRAIN / "model.pt"
    if m.pretrained and init.is_file():
        raise InputError(
            f"{source('student')}.pretrained: true, and {init} exists: its weights would overwrite the "
            "ImageNet ones. Set student.pretrained: false, or pretrain.source: none."
        )
    classes, train, val, selection = training_data(CACHE, PSEUDO, TEACHER, data.train_on, pseudo)
    with resumable("student") as resume, live_log(LIVE) as log:
        metrics = train_model(
            "student", m, cfg, classes, train, val, STUDENT, kd=kd, teacher_checkpoints=TEACHER_OUTPUTS,
            init=init if init.is_file() else None, allow_unmatched_init=data.allow_unmatched_init, log=log,
            resume=resume / STUDENT.name,
            extra_metrics={"train_on": data.train_on, "selection": selection},
        )  # fmt: skip
    write_json(METRICS, metrics)


if __name__ == "__main__":
    run(main)
