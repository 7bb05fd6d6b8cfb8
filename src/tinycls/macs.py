"""MACs by the competition's rules (ptflops 0.6.4 semantics), and a FlopCounterMode cross-check.

Conv, BatchNorm, pooling and Linear count; the ReLU family, Hardswish, Sigmoid, element-wise
ops and `F.*` calls do not. ptflops 0.7's `pytorch` backend with `count_functional=False`
reproduces 0.6.4; its default `aten` backend and the ReLU ignore list do not, so both are pinned.
"""

import copy

import torch
from ptflops import get_model_complexity_info
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tinycls.errors import InputError

IGNORED = [nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6]


def count_macs(model: nn.Module, input_size: int) -> tuple[int, int]:
    """(MACs, parameters) for one (3, input_size, input_size) image, competition rules.

    Known gap: hooks miss timm's `Conv2dSame` (`tf_` models), undercounting by about 10%.
    """
    m = copy.deepcopy(model).cpu().eval()  # ptflops attaches hooks and buffers; keep the caller's clean
    macs, params = get_model_complexity_info(
        m,
        (3, input_size, input_size),
        as_strings=False,
        print_per_layer_stat=False,
        verbose=False,
        ignore_modules=IGNORED,
        backend="pytorch",
        backend_specific_config={"count_functional": False},
    )
    return int(macs), int(params)


def check_budget(model: nn.Module, input_size: int, max_macs: int, where: str) -> int:
    """The model's MACs at `input_size`; `max_macs` > 0 is a budget it must fit.

    Raises:
        InputError: over the budget (the message names both numbers and the ways out).
    """
    macs, _ = count_macs(model, input_size)
    if 0 < max_macs < macs:
        raise InputError(
            f"{where}: the network counts {macs:,} MACs at {input_size} px, over the budget max_macs {max_macs:,}. "
            "Pick a smaller one (`tinycls search`, `tinycls nas`), a smaller input_size, or raise max_macs."
        )
    return macs


def flop_counter_macs(model: nn.Module, input_size: int) -> int:
    """MACs as torch's FlopCounterMode sees them (FLOPs / 2): conv and matmul only."""
    m = copy.deepcopy(model).cpu().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        m(torch.zeros(1, 3, input_size, input_size))
    return counter.get_total_flops() // 2
