"""Architecture x input size search by MACs, no training: which known small network at which
size fits a MACs budget, and which sizes sit just before a jump in MACs (80 -> 81 px costs
ShuffleNetV1 +22%: odd sizes round feature maps up at every stride-2 layer)."""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from tinycls.errors import InputError
from tinycls.latency import model_latency_ms
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
    latency_ms: float | None = None  # ONNX Runtime, batch 1, one thread, p50 (with latency=True)
    latency_rank: int | None = None  # 1 = fastest; compare with the MACs order of the table


def search(
    archs: Sequence[str], sizes: Sequence[int], num_classes: int, budget: int | None = None, latency: bool = False
) -> list[Candidate]:
    """MACs and params of every arch at every size (and one pixel more), sorted by MACs; with
    `latency`, also the ONNX Runtime batch-1 latency (one thread, p50) of each candidate within
    the budget and its rank, since fewer MACs is not always faster.

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
            within = budget is None or macs <= budget
            ms = model_latency_ms(model, arch, size) if latency and within else None
            rows.append(Candidate(arch, size, macs, params, nxt, jump, jump > JUMP, within, ms))
    rows = sorted(rows, key=lambda r: (r.macs, r.arch, r.size))
    timed = sorted((r for r in rows if r.latency_ms is not None), key=lambda r: r.latency_ms)
    rank = {id(r): i for i, r in enumerate(timed, start=1)}
    return [replace(r, latency_rank=rank.get(id(r))) for r in rows]


def to_markdown(rows: Sequence[Candidate]) -> str:
    timed = any(r.latency_ms is not None for r in rows)
    head = "| arch | size px | MACs | params | +1 px |" + (" latency ms | MACs rank | latency rank |" if timed else "")
    lines = [head + " note |", "|---|---|---|---|---|" + ("---|---|---|" if timed else "") + "---|"]
    for i, r in enumerate(rows, start=1):
        note = f"before a jump: {r.size + 1} px costs +{r.jump:.0%}" if r.before_jump else ""
        line = f"| {r.arch} | {r.size} | {r.macs:,} | {r.params:,} | {r.jump:+.1%} |"
        if timed:
            ms = f"{r.latency_ms:.3f}" if r.latency_ms is not None else ""
            line += f" {ms} | {i} | {r.latency_rank or ''} |"
        lines.append(f"{line} {note} |")
    return "\n".join(lines)


def to_records(rows: Sequence[Candidate]) -> list[dict]:
    return [asdict(r) for r in rows]
