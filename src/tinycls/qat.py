"""Quantization-aware fine-tuning (QAT) for the INT8 export.

Post-training quantization of a tiny student flips the prediction of about 2% of the quick start's
test images against the FP32 model (docs/shipping.md): its logits are close together (a
distilled 67k-parameter net) and 8-bit weights and activations move them by more than the gap.
Here the FP32 model is copied, its BatchNorms folded into the convolutions (as ONNX Runtime folds
them), and PyTorch's FX quantization simulates ONNX Runtime's INT8 scheme during a short
fine-tuning: per-channel symmetric INT8 weights, per-tensor asymmetric UINT8 activations whose
ranges start from the calibration images. The copy learns to predict what the FP32 model predicts
(distillation on training images, no labels), then is written as QDQ ONNX with the ranges it was
trained for: ONNX Runtime fuses the pairs into its integer kernels (QLinearConv, QLinearAdd, ...).
The FP32 model is not modified.
"""

import copy
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tinycls.errors import InputError
from tinycls.transforms import to_input

# ONNX Runtime's x86 pairing: UINT8 activations (0..255, affine), INT8 weights symmetric (-127..127)
ACT_RANGE, WEIGHT_RANGE = (0, 255), (-127, 127)


def _qconfig_mapping() -> Any:
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        PerChannelMinMaxObserver,
        QConfig,
        QConfigMapping,
    )

    act = FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=ACT_RANGE[0], quant_max=ACT_RANGE[1],
        dtype=torch.quint8, qscheme=torch.per_tensor_affine,
    )  # fmt: skip
    weight = FakeQuantize.with_args(
        observer=PerChannelMinMaxObserver, quant_min=WEIGHT_RANGE[0], quant_max=WEIGHT_RANGE[1],
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0,
    )  # fmt: skip
    return QConfigMapping().set_global(QConfig(activation=act, weight=weight))


class NotTraceable(InputError):
    """torch.fx cannot trace the model, so it cannot be fine-tuned for INT8 here."""


def prepare(model: nn.Module, arch: str, example: torch.Tensor) -> nn.Module:
    """A copy of `model` (untouched) with BatchNorm folded and fake quantization inserted. Ops the
    scheme does not cover (e.g. hard-sigmoid, whose ranges PyTorch fixes) stay float.

    Raises:
        NotTraceable: torch.fx cannot trace the model (data-dependent Python control flow, ...):
            5 of the 7 default families trace, DiceNet, MixNet and timm's tf_ models do not.
    """
    with warnings.catch_warnings():  # torch.ao's deprecation notice and per-op qconfig notes
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*|tinycls\.qat")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from torch.ao.quantization.quantize_fx import prepare_qat_fx
        from torch.fx.experimental.optimization import fuse
        from torch.fx.proxy import TraceError

        try:
            folded = fuse(copy.deepcopy(model).cpu().eval())
            return prepare_qat_fx(folded.train(), _qconfig_mapping(), (example,))
        except (TraceError, TypeError) as e:  # what torch.fx raises on Python it cannot trace; others are bugs
            raise NotTraceable(
                f"{arch}: quantization-aware training needs a torch.fx-traceable model ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''}); `export.int8: ptq` (ONNX Runtime's "
                "post-training quantization) works for this model."
            ) from None


def _no_dropout(model: nn.Module) -> nn.Module:
    """Train mode (fake quantization learns) but without dropout, and with any BatchNorm the
    folding left (a subclass such as timm's BatchNormAct2d) on its running statistics: the copy
    should agree with the FP32 model, not regularize or re-estimate."""
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)):
            m.eval()
    return model


def fine_tune(
    model: nn.Module,
    meta: dict[str, Any],
    images: Any,
    calibration: np.ndarray,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    progress: bool = True,
) -> nn.Module:
    """The INT8 simulation of `model` fine-tuned to predict what `model` predicts on `images`
    (uint8, N x S x S x 3 at the cache side: an array or tinycls Rows); activation ranges are first
    observed on `calibration`, then follow the fine-tuning's activations for its first half and stay
    fixed after; so do the weights' per-channel ranges (the weights keep learning within them).
    Returns the simulation (ranges fixed, eval mode), to pass to `to_qdq`."""
    from torch.ao.quantization import disable_observer

    size, mean, std = int(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"])

    def inputs(x: Any) -> torch.Tensor:
        return to_input(torch.from_numpy(np.asarray(x)), size, mean, std).to(device)

    qat = _no_dropout(prepare(model, meta["arch"], inputs(calibration[:2]).cpu())).to(device)
    teacher = copy.deepcopy(model).to(device).eval()
    with torch.no_grad():
        for i in range(0, len(calibration), batch_size):
            qat(inputs(calibration[i : i + batch_size]))
    steps_per_epoch = len(images) // batch_size if len(images) >= batch_size else 1
    steps = epochs * steps_per_epoch
    if steps == 0:
        return qat.apply(disable_observer).cpu().eval()
    opt = torch.optim.Adam(qat.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(images), generator=g).numpy()
        bar = tqdm(range(steps_per_epoch), desc=f"QAT epoch {epoch}/{epochs}", disable=not progress, leave=True,
                   dynamic_ncols=True, mininterval=0.5)  # fmt: skip
        for b in bar:
            x = inputs(images[np.sort(order[b * batch_size : (b + 1) * batch_size])])
            with torch.no_grad():
                target = teacher(x)
            loss = F.mse_loss(qat(x), target)  # the logits themselves: KL would let them drift by a constant
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == steps // 2:  # settle the ranges the rest of the fine-tuning adapts to
                qat.apply(disable_observer)
            if b % 10 == 0:  # set_postfix redraws: as train.fit does, not on every step
                bar.set_postfix(mse=f"{loss.item():.2e}", refresh=False)
    return qat.apply(disable_observer).cpu().eval()  # fixed ranges from here on, also in eval mode


class _Activation(nn.Module):
    """UINT8 quantize-dequantize at a fixed scale and zero point (ONNX QuantizeLinear +
    DequantizeLinear)."""

    def __init__(self, scale: float, zero_point: int) -> None:
        super().__init__()
        self.scale, self.zero_point = scale, zero_point

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qd, (lo, hi) = torch.ops.quantized_decomposed, ACT_RANGE
        q = qd.quantize_per_tensor(x, self.scale, self.zero_point, lo, hi, torch.uint8)
        return qd.dequantize_per_tensor(q, self.scale, self.zero_point, lo, hi, torch.uint8)


class _Weight(nn.Module):
    """The INT8 weight stored as INT8 and dequantized per output channel (ONNX DequantizeLinear of
    an INT8 initializer, the pattern ONNX Runtime turns into an integer kernel)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        shape = (-1,) + (1,) * (weight.dim() - 1)
        q = torch.clamp(torch.round(weight.detach().cpu() / scale.view(shape)), *WEIGHT_RANGE)
        self.register_buffer("q", q.to(torch.int8))
        self.register_buffer("scale", scale.float())
        self.register_buffer("zero_point", torch.zeros(len(scale), dtype=torch.int32))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # the float weight is not used
        qd = torch.ops.quantized_decomposed
        return qd.dequantize_per_channel(self.q, self.scale, self.zero_point, 0, -128, 127, torch.int8)


def to_qdq(qat: nn.Module) -> nn.Module:
    """The fine-tuned simulation with every fake quantization replaced by explicit quantize /
    dequantize ops at the learned scales: what PyTorch's ONNX exporter writes as QDQ."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)
    from torch.ao.quantization import FakeQuantize

    qdq, made = copy.deepcopy(qat).cpu().eval(), {}
    for name, m in list(qdq.named_modules(remove_duplicate=False)):  # shared observers: once, shared
        if not isinstance(m, FakeQuantize):
            continue
        parent, _, attr = name.rpartition(".")
        owner = qdq.get_submodule(parent)
        if id(m) not in made:
            scale, zero_point = m.calculate_qparams()
            made[id(m)] = (
                _Weight(owner.weight, scale)
                if attr == "weight_fake_quant"
                else _Activation(float(scale), int(zero_point))
            )
        setattr(owner, attr, made[id(m)])
    return qdq
