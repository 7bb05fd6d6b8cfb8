"""Architecture x input size search by MACs, no training: which known small network at which
size fits a MACs budget, and which sizes sit just before a jump in MACs (80 -> 81 px costs
ShuffleNetV1 +22%: odd sizes round feature maps up at every stride-2 layer)."""

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tinycls.errors import InputError
from tinycls.macs import count_macs
from tinycls.models import build_model

# The competition's seven families (competition.md), at the widths this machine's libraries have.
CANDIDATES = (
    "pytorchcv:shufflenet_g3_wd4",  # ShuffleNetV1 g3 x0.25
    "pytorchcv:shufflenetv2_wd2",  # ShuffleNetV2 x0.5
    "pytorchcv:fdmobilenet_wd4",  # FD-MobileNet x0.25
    "pytorchcv:dicenet_wd5",  # DiceNet x0.2
    "pytorchcv:mobilenetv3_small_w7d20",  # MobileNetV3 small x0.35 (no x0.1 in pytorchcv)
    "pytorchcv:mnasnet_small",  # MnasNet small
    "pytorchcv:mixnet_s",  # MixNet-S x1.0 (no x0.2)
)
SIZES = (64, 72, 80, 88, 96)
JUMP = 0.10  # a size is "before a jump" when one more pixel costs more than this share of MACs


@dataclass(frozen=True)
class Candidate:
    arch: str
    size: int
    macs: int
    params: int
    next_px_macs: int  # MACs at size + 1
    jump: float  # next_px_macs / macs - 1
    before_jump: bool  # the last size before a jump: a good size to pick
    within_budget: bool


def search(archs: Sequence[str], sizes: Sequence[int], num_classes: int, budget: int | None = None) -> list[Candidate]:
    """MACs and params of every arch at every size (and one pixel more), sorted by MACs.

    Raises:
        ValueError: an unknown model name (from build_model), or a size below 8.
    """
    bad = [s for s in sizes if s < 8]
    if bad:
        raise InputError(f"sizes {bad}: every size must be >= 8 px.")
    rows = []
    for arch in archs:
        model = build_model(arch, num_classes)
        for size in sizes:
            macs, params = count_macs(model, size)
            nxt, _ = count_macs(model, size + 1)
            jump = nxt / macs - 1
            rows.append(Candidate(arch, size, macs, params, nxt, jump, jump > JUMP, budget is None or macs <= budget))
    return sorted(rows, key=lambda r: (r.macs, r.arch, r.size))


def to_markdown(rows: Sequence[Candidate]) -> str:
    lines = [
        "| arch | size px | MACs | params | +1 px | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = f"before a jump: {r.size + 1} px costs +{r.jump:.0%}" if r.before_jump else ""
        lines.append(f"| {r.arch} | {r.size} | {r.macs:,} | {r.params:,} | {r.jump:+.1%} | {note} |")
    return "\n".join(lines)


def to_records(rows: Sequence[Candidate]) -> list[dict]:
    return [asdict(r) for r in rows]
