"""Stage `assistant`: the middle of a teacher chain (teacher -> assistant -> student). A
mid-size model distilled from the teacher (params.yaml [assistant].kd), trained only when the
student's kd.teachers lists it, so the chain or the ensemble is chosen by params alone."""

import shutil
from pathlib import Path

from stages.curves import no_curves
from stages.params import ASSISTANT, CACHE, PSEUDO, TEACHER, TEACHER_OUTPUTS, section, source, value
from stages.runner import primary, resumable, run, write_json
from stages.training import live_log, split_section
from tinycls.config import from_section
from tinycls.distill import KDConfig
from tinycls.errors import InputError
from tinycls.pseudo import DataConfig, PseudoConfig, training_data
from tinycls.run import ModelConfig, train_model
from tinycls.train import TrainConfig

LIVE = Path("live/assistant")
METRICS = Path("metrics/assistant.json")


def settings() -> tuple[ModelConfig, TrainConfig, KDConfig, DataConfig, PseudoConfig, object]:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    extras = [(KDConfig, "kd"), (DataConfig, ("train_on",))]  # its own [kd] under assistant.kd
    m, cfg, (kd, data) = split_section("assistant", section("assistant"), extras)
    if kd.teachers != ["teacher"]:
        raise InputError(f"{source('assistant')}.kd.teachers: {kd.teachers}: the assistant learns from [teacher] only.")
    pseudo = from_section(PseudoConfig, section("pseudo"), source("pseudo"))
    return m, cfg, kd, data, pseudo, value("kd", "teachers")


def main() -> None:
    m, cfg, kd, data, pseudo, wanted = settings()
    if primary():  # torchrun's other ranks only train
        shutil.rmtree(ASSISTANT, ignore_errors=True)
    if not isinstance(wanted, list) or "assistant" not in wanted:
        status = {"trained": False, "why": "params.yaml [kd].teachers does not list it"}
        write_json(ASSISTANT / "status.json", status)
        no_curves(LIVE, status)
        write_json(METRICS, {"trained": False})
        print("assistant: not trained (kd.teachers does not list it)")
        return
    split, selection = training_data(CACHE, PSEUDO, TEACHER, data.train_on, pseudo)
    with resumable("assistant") as resume, live_log(LIVE) as log:
        out = ASSISTANT / "model.pt"
        metrics = train_model(
            "assistant", m, cfg, split, out, kd=kd, teachers=TEACHER_OUTPUTS, log=log, resume=resume / out.name
        )
    write_json(ASSISTANT / "status.json", {"trained": True, "arch": m.arch})
    write_json(METRICS, {"trained": True, **metrics, "train_on": data.train_on, "selection": selection})


if __name__ == "__main__":
    run(main)
