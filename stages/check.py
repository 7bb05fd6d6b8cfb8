"""Stage `check`: every section of params.yaml checked, in seconds, before any stage works: each
stage's own `settings()` ([prepare]: its config alone, without the decoders), the rules between
sections (stages/rules.py) and unknown sections (a typo, or `dvc exp run -S +studnet.epochs=3`),
all problems listed. Every stage after it depends on CHECKED, whose text never changes."""

from pathlib import Path

from stages import assistant, compress, export, pretrain, pseudo, score, student, teacher
from stages.params import section, source
from stages.rules import across, budget, sections
from stages.runner import run
from tinycls.config import from_section
from tinycls.errors import InputError
from tinycls.nas.config import NasConfig
from tinycls.prepare_config import PrepareConfig

CHECKED = Path("artifacts/check/checked.txt")
CHECKS = {  # section: its stage's check (student reads [kd] too, and `tinycls nas` reads [nas])
    "prepare": lambda: from_section(PrepareConfig, section("prepare"), source("prepare")),
    "pretrain": pretrain.settings,
    "teacher": lambda: teacher.settings(section("teacher")),
    "pseudo": pseudo.settings,
    "assistant": assistant.settings,
    "student": student.settings,
    "kd": lambda: from_section(student.KDConfig, section("kd"), source("kd")),  # alone: with [student]'s problems
    "compress": compress.settings,
    "export": export.settings,
    "score": score.settings,
    "nas": lambda: from_section(NasConfig, section("nas"), "params.yaml [nas]"),
}
SECTIONS = tuple(CHECKS)


def problems() -> list[str]:
    """Every problem in params.yaml (empty when all of it is valid), one message each."""
    params, found = sections(SECTIONS)
    if params is None:
        return found
    checked = {}
    for name, check in CHECKS.items():
        try:
            checked[name] = check()
        except InputError as e:
            found.append(str(e))
    found += across(params)
    if "prepare" in checked and "student" in checked:
        found += budget(checked["student"][0], checked["prepare"].dataset)
    return list(dict.fromkeys(found))  # compress and student both read [kd]: report a problem once


def main() -> None:
    if found := problems():
        raise InputError(f"{len(found)} problem(s) in params.yaml; nothing was run:\n  - " + "\n  - ".join(found))
    CHECKED.parent.mkdir(parents=True, exist_ok=True)
    CHECKED.write_text("params.yaml: every section checked by stages/check.py\n")
    print(f"check: params.yaml, all {len(SECTIONS)} sections valid")


if __name__ == "__main__":
    run(main)
