"""What stage `check` checks beyond each stage's own `settings()`: params.yaml's sections, and the
rules between sections that no one stage sees."""

import yaml

from stages.params import DATA, PARAMS, source
from tinycls.errors import InputError, MissingInput
from tinycls.folders import class_folders
from tinycls.macs import check_budget
from tinycls.models import arch_kwargs, build_model
from tinycls.run import ModelConfig


def sections(known: tuple[str, ...]) -> tuple[dict | None, list[str]]:
    """params.yaml read as a mapping of sections (None when it is not one), and its unknown sections."""
    if not PARAMS.is_file():
        raise MissingInput(f"{PARAMS.resolve()}: not found; run `dvc repro` from the repository root.")
    try:
        params = yaml.safe_load(PARAMS.read_text())
    except yaml.YAMLError as e:
        return None, [f"params.yaml: not valid YAML ({e}); fix the syntax (docs/parameters.md)."]
    if not isinstance(params, dict):
        return None, ["params.yaml: must be a mapping of sections (prepare:, teacher:, ...); see docs/parameters.md."]
    return params, [
        f"params.yaml: unknown section [{name}]; the sections are {', '.join(known)} "
        "(a typo, or `dvc exp run -S +section.key=value`, adds one)."
        for name in params
        if name not in known
    ]


def across(params: dict) -> list[str]:
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


def budget(m: ModelConfig, dataset: str) -> list[str]:
    """The student `m`'s max_macs against it built for the classes in data/<dataset> (the stage
    checks again on the prepared classes): an over-budget network stops here, not after the teacher."""
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
