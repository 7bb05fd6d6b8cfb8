"""Stage `check`: every section of params.yaml checked, in seconds, before any stage works.

Each stage's own `settings()` parses and checks what it reads; this stage calls all of them and
rejects unknown sections, so a typo in any section (`studnet:` typed in params.yaml, or
`dvc exp run -S +studnet.epochs=3`; DVC refuses it without the +), a wrong
type or an out-of-range value stops `dvc repro` / `dvc exp run` here, with every problem listed,
instead of after the teacher has trained. Every other stage depends on CHECKED, whose text never
changes, so a valid change reruns this stage (seconds) and exactly the stages it reran before.
"""

from pathlib import Path

import yaml

from stages import assistant, compress, export, prepare, pretrain, pseudo, score, student, teacher
from stages.params import DATA, PARAMS, run, section, source
from tinycls.config import from_section
from tinycls.errors import InputError, MissingInput
from tinycls.folders import class_folders
from tinycls.macs import check_budget
from tinycls.models import arch_kwargs, build_model
from tinycls.nas.config import NasConfig

CHECKED = Path("artifacts/check/checked.txt")
SECTIONS = (
    "prepare",
    "pretrain",
    "teacher",
    "pseudo",
    "assistant",
    "student",
    "kd",
    "compress",
    "export",
    "score",
    "nas",
)
CHECKS = {
    "prepare": prepare.settings,
    "pretrain": pretrain.settings,
    "teacher": lambda: teacher.settings(section("teacher")),
    "pseudo": pseudo.settings,
    "assistant": assistant.settings,
    "student": student.settings,  # and [kd]
    "compress": compress.settings,
    "export": export.settings,
    "score": score.settings,
    "nas": lambda: from_section(NasConfig, section("nas"), "params.yaml [nas]"),  # `tinycls nas`, no stage
}


def problems() -> list[str]:
    """Every problem in params.yaml (empty when all of it is valid), one message each."""
    if not PARAMS.is_file():
        raise MissingInput(f"{PARAMS.resolve()}: not found; run `dvc repro` from the repository root.")
    try:
        params = yaml.safe_load(PARAMS.read_text())
    except yaml.YAMLError as e:
        return [f"params.yaml: not valid YAML ({e}); fix the syntax (docs/parameters.md)."]
    if not isinstance(params, dict):
        return ["params.yaml: must be a mapping of sections (prepare:, teacher:, ...); see docs/parameters.md."]
    found = [
        f"params.yaml: unknown section [{name}]; the sections are {', '.join(SECTIONS)} "
        "(a typo, or `dvc exp run -S +section.key=value`, adds one)."
        for name in params
        if name not in SECTIONS
    ]
    for check in CHECKS.values():
        try:
            check()
        except InputError as e:
            found.append(str(e))
    found += _across(params) + _budget()
    return list(dict.fromkeys(found))  # compress and student both read [kd]: report a problem once


def _across(params: dict) -> list[str]:
    """Rules between sections, checked from params alone (the stages see them only later)."""
    student, pre = params.get("student"), params.get("pretrain")
    if isinstance(student, dict) and isinstance(pre, dict):
        if student.get("pretrained") is True and pre.get("source") not in (None, "none"):
            return [
                f"{source('student')}.pretrained: true, and pretrain.source: {pre.get('source')} writes a "
                "checkpoint whose weights would overwrite the ImageNet ones. Set student.pretrained: false, "
                "or pretrain.source: none."
            ]
    return []


def _budget() -> list[str]:
    """student.max_macs against the student built for the classes in data/ (the stage checks again
    on the prepared classes): an over-budget network stops here, not after the teacher."""
    try:
        m, dataset = student.settings()[0], prepare.settings().dataset
    except InputError:  # reported by CHECKS
        return []
    train_dir = DATA / dataset / "train"
    if not m.max_macs or not train_dir.is_dir() or not (classes := class_folders(train_dir)):
        return []
    try:
        check_budget(
            build_model(m.arch, len(classes), **arch_kwargs(m.arch)), m.input_size, m.max_macs, source("student")
        )
    except InputError as e:
        return [str(e)]
    return []


def main() -> None:
    if found := problems():
        raise InputError(
            f"{len(found)} problem(s) in params.yaml; nothing was run:\n" + "\n".join(f"  - {p}" for p in found)
        )
    CHECKED.parent.mkdir(parents=True, exist_ok=True)
    CHECKED.write_text("params.yaml: every section checked by stages/check.py\n")
    print(f"check: params.yaml, all {len(SECTIONS)} sections valid")


if __name__ == "__main__":
    run(main)
