"""Stage `pseudo`: the teacher labels the test split (optionally with flip TTA): every image's
class, confidence and probabilities. No test label is read here."""

from pathlib import Path

from stages.params import CACHE, PSEUDO, TEACHER, section, source
from stages.runner import run, write_json
from tinycls.cache import load_classes, load_split
from tinycls.checkpoint import load_checkpoint
from tinycls.config import from_section
from tinycls.device import resolve_device
from tinycls.errors import InputError
from tinycls.pseudo import PseudoConfig, pseudo_table, summarize, teacher_probs

METRICS = Path("metrics/pseudo.json")


def settings() -> PseudoConfig:
    """The params this stage reads, checked (stage `check` calls it before any stage runs)."""
    return from_section(PseudoConfig, section("pseudo"), source("pseudo"))


def main() -> None:
    p = settings()
    device = resolve_device(p.device)
    classes = load_classes(CACHE)
    model, meta = load_checkpoint(TEACHER, device, classes, role="teacher")
    test_images, _ = load_split(CACHE, "test")
    if len(test_images) == 0:
        raise InputError(f"{CACHE}/test_images.npy: the test split is empty; put images in data/<dataset>/test/.")
    probs = teacher_probs(model, meta, test_images, device, p.hflip_tta, p.batch_size)
    PSEUDO.parent.mkdir(parents=True, exist_ok=True)
    pseudo_table(probs, classes).to_csv(PSEUDO, index=False, float_format="%.6f")
    metrics = summarize(probs, p.threshold, classes)
    write_json(METRICS, {**metrics, "hflip_tta": p.hflip_tta, "teacher": meta["arch"]})
    print(f"pseudo: {metrics['images']} test images, {metrics['coverage']:.1%} at confidence >= {p.threshold}")


if __name__ == "__main__":
    run(main)
