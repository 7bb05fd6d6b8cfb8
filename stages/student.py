"""Stage `student`: train the small student on train, train + val, or train + val +
pseudo-labelled test (params), starting from the pretrain stage's weights when there are any,
distilling from the teacher, the assistant, or both (params.yaml [kd])."""

from pathlib import Path

from stages.params import PRETRAIN, STUDENT, section, source
from stages.pseudo import DataParams, PseudoParams, training_data
from stages.training import KDParams, split_section, train_model
from tinycls.config import from_section

LIVE = Path("live/student")
METRICS = Path("metrics/student.json")


def main() -> None:
    m, cfg, other = split_section("student", section("student"), ("train_on", "allow_unmatched_init"))
    data = from_section(DataParams, other, source("student"))
    pseudo = from_section(PseudoParams, section("pseudo"), source("pseudo"))
    kd = from_section(KDParams, section("kd"), source("kd"))
    if "student" in kd.teachers:
        raise ValueError(
            f"{source('kd')}.teachers: {kd.teachers}: the student cannot teach itself; list it in "
            "compress.kd_teachers to distil the compressed student from the uncompressed one."
        )
    init = PRETRAIN / "model.pt"
    if m.pretrained and init.is_file():
        raise ValueError(
            f"{source('student')}.pretrained: true, and {init} exists: its weights would overwrite the "
            "ImageNet ones. Set student.pretrained: false, or pretrain.source: none."
        )
    classes, train, val, selection = training_data(data.train_on, pseudo)
    train_model(
        "student",
        m,
        cfg,
        classes,
        train,
        val,
        STUDENT,
        LIVE,
        METRICS,
        {"train_on": data.train_on, "selection": selection},
        kd=kd,
        init=init if init.is_file() else None,
        allow_unmatched_init=data.allow_unmatched_init,
    )


if __name__ == "__main__":
    main()
