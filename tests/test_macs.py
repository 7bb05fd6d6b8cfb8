import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from tinycls.cli import app
from tinycls.macs import count_macs, flop_counter_macs
from tinycls.models import build_model


def test_reference_value_through_the_cli():
    """competition.md: ShuffleNetV1 g3 x0.25 at 80 px, 9 classes -> 1,688,940 MACs."""
    result = CliRunner().invoke(app, ["macs", "pytorchcv:shufflenet_g3_wd4", "--size", "80", "--classes", "9"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "1688940"
    assert lines[0] == "params 67062"


def test_hand_computed_conv_and_linear():
    """conv 8 out x 3 in x 3x3 x 10x10 positions = 21,600 (+ 800 bias adds); pooling reads its
    800 inputs; linear 80 x 4 = 320 (+ 4 bias adds)."""

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d((1, 10))
            self.fc = nn.Linear(8 * 10, 4)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x)).flatten(1))

    macs, params = count_macs(Fixed(), 10)
    assert macs == 21_600 + 800 + 800 + 320 + 4
    assert params == 8 * 3 * 9 + 8 + 80 * 4 + 4


def test_relu_family_is_ignored_but_batchnorm_counts():
    conv = nn.Conv2d(3, 4, 1, bias=False)
    plain, _ = count_macs(nn.Sequential(conv), 8)
    with_relus, _ = count_macs(nn.Sequential(conv, nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(), nn.PReLU(), nn.ELU()), 8)
    with_bn, _ = count_macs(nn.Sequential(conv, nn.BatchNorm2d(4)), 8)
    assert with_relus == plain == 3 * 4 * 64
    assert with_bn > plain


@pytest.mark.parametrize("groups", [1, 3])
def test_matches_flop_counter_on_conv_linear_only_models(groups):
    model = nn.Sequential(
        nn.Conv2d(3, 12, 3, stride=2, groups=1, bias=False),
        nn.Conv2d(12, 24, 3, groups=groups, bias=False),
        nn.Flatten(),
        nn.Linear(24 * 5 * 5, 7, bias=False),
    )
    assert count_macs(model, 16)[0] == flop_counter_macs(model, 16)


def test_does_not_touch_the_callers_model():
    model = build_model("pytorchcv:shufflenet_g3_wd4", 3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, 32)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(hasattr(m, "__flops__") for m in model.modules())
