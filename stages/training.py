"""For the stages that train a model: a params section split into configs, and a dvclive logger."""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dvclive import Live

from stages.params import source
from tinycls.config import from_sections
from tinycls.errors import InputError
from tinycls.run import ModelConfig
from tinycls.train import TrainConfig
from tinycls.weights import PACKAGE_PREFIX

MODEL_KEYS = ("arch", "pretrained", "weights", "input_size", "max_macs")
WEIGHTS = Path("weights")  # local ImageNet weights files: a dvc.yaml dependency of teacher, assistant, student


def split_section(
    name: str, section: dict[str, Any], extras: Sequence[tuple[Any, tuple[str, ...] | str]] = ()
) -> tuple[ModelConfig, TrainConfig, list[Any]]:
    """(model config, loop config, a config per `extras` entry: (cls, keys) from those keys, (cls,
    "key") from the sub-section under it) of a params section, every problem of all at once."""
    pick = lambda keys: {k: v for k, v in section.items() if k in keys}  # noqa: E731
    taken = MODEL_KEYS + tuple(k for _, keys in extras for k in ((keys,) if isinstance(keys, str) else keys))
    parts = [(ModelConfig, pick(MODEL_KEYS)), (TrainConfig, pick(set(section) - set(taken)))] + [
        (cls, section.get(k), f"{source(name)}.{k}") if isinstance(k, str) else (cls, pick(k)) for cls, k in extras
    ]
    model, train, *more = from_sections(parts, source(name))
    w, local = Path(model.weights), model.weights and not model.weights.startswith(PACKAGE_PREFIX)
    if local and (w.parts[:1] != (WEIGHTS.name,) or ".." in w.parts):
        raise InputError(
            f"{source(name)}.weights: {model.weights!r}: a local weights file must sit in {WEIGHTS}/, which the stages "
            f"that load weights depend on (replacing it reruns them). Copy it there; set weights: {WEIGHTS}/{w.name}."
        )
    return model, train, more


@contextmanager
def live_log(live_dir: Path, prefix: str = "", resume: bool = False) -> Iterator[Callable[[dict[str, float]], None]]:
    """A per-epoch logger into dvclive's `live_dir` (curves for `dvc plots`), opened at the first
    epoch's row, so a stage that fails before training leaves no curves behind. A stage that
    trains in phases logs each under its `prefix`, resuming the same run after the first."""
    live: Live | None = None

    def log(row: dict[str, float]) -> None:
        nonlocal live
        if live is None:
            live = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=resume)
        for k, v in row.items():
            live.log_metric(prefix + k, v)
        live.next_step()

    try:
        yield log
    finally:
        if live is not None:
            live.end()
