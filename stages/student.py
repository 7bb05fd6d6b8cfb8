"""Stage `student`: train the small student on train, train + val, or train + val +
pseudo-labelled test (params), starting from the pretrain stage's weights when there are any,
distilling from the teacher, the assistant, or both (params.yaml [kd])."""

from pathlib import Path

from stages.params import CACHE, PRETRAIN, PSEUDO, STUDENT, TEACHER, TEACHER_OUTPUTS, section, source
from stages.runner import resumable, run, write_json
from stages.training import live_log, split_section
from tinycls.config import from_section
from tinycls.distill import KDConfig
from tinycls.errors import InputError
from tinycls.pseudo import DataConfig, PseudoConfig, training_data
from tinycls.run import ModelConfig, Start, train_model
from tinycls.train import TrainConfig

LIVE = Path("live/student")
METRICS = Path("metrics/student.json")


def settings() -> tuple[ModelConfig, TrainConfig, DataConfig, PseudoConfig, KDConfig]:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    m, cfg, (data,) = split_section("student", section("student"), [(DataConfig, ("train_on", "allow_unmatched_init"))])
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
    split, selection = training_data(CACHE, PSEUDO, TEACHER, data.train_on, pseudo)
    start = Start(init=init if init.is_file() else None, allow_unmatched=data.allow_unmatched_init)
    with resumable("student") as resume, live_log(LIVE) as log:
        state = resume / STUDENT.name
        metrics = train_model(
            "student", m, cfg, split, STUDENT, start=start, kd=kd, teachers=TEACHER_OUTPUTS, log=log, resume=state
        )
    write_json(METRICS, {**metrics, "train_on": data.train_on, "selection": selection})


if __name__ == "__main__":
    run(main)
