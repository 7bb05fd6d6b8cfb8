"""Structured compression. Layer pruning: the competition's ShuffleNetV1 [4-8-4] -> [2-5-2] from the library, from a
checkpoint and from the CLI, with the competition's own count as the reference."""

import pytest
import torch
from typer.testing import CliRunner

from tinycls.checkpoint import load_checkpoint, save_checkpoint
from tinycls.cli import app
from tinycls.compress import compress, prune_channels, prune_to_macs, split_groups
from tinycls.macs import count_macs
from tinycls.models import build_model
from tinycls.structure import choose_blocks, keep_blocks, stage_depths

ARCH = "pytorchcv:shufflenet_g3_wd4"
PRUNED_MACS = 1_083_210  # the competition's count for [2-5-2] at 80 px, 9 classes (competition.md)


def test_keep_blocks_2_5_2_matches_the_competitions_count():
    model = build_model(ARCH, 9, keep_blocks=[2, 5, 2])
    assert stage_depths(model) == [2, 5, 2]
    assert count_macs(model, 80) == (PRUNED_MACS, 34422)
    assert count_macs(build_model(ARCH, 9), 80)[0] == 1_688_940  # untouched: [4, 8, 4]


def test_kept_blocks_keep_their_names_and_weights():
    torch.manual_seed(0)
    full = build_model(ARCH, 9)
    pruned = keep_blocks(build_model(ARCH, 9), [2, 5, 2])
    sd = full.state_dict()
    missing, unexpected = pruned.load_state_dict(sd, strict=False)
    assert not missing and all(".unit" in k for k in unexpected)  # only the dropped blocks are left over
    assert "features.stage2.unit5.compress_conv1.weight" in pruned.state_dict()
    assert not any(k.startswith("features.stage2.unit6.") for k in pruned.state_dict())
    assert pruned(torch.zeros(2, 3, 80, 80)).shape == (2, 9)


def test_a_pruned_checkpoint_rebuilds_itself(tmp_path):
    model = build_model(ARCH, 3, keep_blocks=[2, 5, 2])
    meta = {
        "arch": ARCH,
        "arch_kwargs": {"keep_blocks": [2, 5, 2]},
        "classes": ["a", "b", "c"],
        "input_size": 80,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    save_checkpoint(tmp_path / "p.pt", model, meta)
    torch.load(tmp_path / "p.pt", weights_only=True)
    again, _ = load_checkpoint(tmp_path / "p.pt")
    assert stage_depths(again) == [2, 5, 2]
    x = torch.rand(1, 3, 80, 80)
    assert torch.equal(again(x), model.eval()(x))


def test_timm_stages_can_be_pruned_too():
    model = build_model("timm:mobilenetv3_small_050", 4)
    depths = stage_depths(model)
    keep_blocks(model, [1] * len(depths))
    assert stage_depths(model) == [1] * len(depths) and model(torch.zeros(1, 3, 64, 64)).shape == (1, 4)


@pytest.mark.parametrize(
    ("arch", "keep", "message"),
    [
        (ARCH, [2, 5], "keep_blocks [2, 5]: 2 entries, but pytorchcv:shufflenet_g3_wd4 has 3 stages [4, 8, 4]."),
        (ARCH, [0, 5, 2], "stage 1 has 4 blocks; keep between 1 (its first block changes width"),
        (ARCH, [2, 9, 2], "stage 2 has 8 blocks; keep between 1"),
        ("timm:resnet18", [1, 1], "timm:resnet18: no stages of blocks found"),
    ],
)
def test_bad_keep_blocks(arch, keep, message):
    with pytest.raises(ValueError) as e:
        build_model(arch, 9, keep_blocks=keep)
    assert message in str(e.value)


def test_cli_prints_the_pruned_macs():
    runner = CliRunner()
    r = runner.invoke(app, ["macs", ARCH, "--size", "80", "--classes", "9", "--keep-blocks", "2,5,2"])
    assert r.exit_code == 0 and r.output.strip().splitlines()[-1] == str(PRUNED_MACS)
    r = runner.invoke(app, ["macs", ARCH, "--size", "80", "--keep-blocks", "2,5"])
    assert r.exit_code == 2 and "3 stages [4, 8, 4]" in r.output
    r = runner.invoke(app, ["macs", ARCH, "--size", "80", "--keep-blocks", "two"])
    assert r.exit_code == 2 and "expected integers separated by commas" in r.output


# --- group decomposition ---------------------------------------------------------------------


def test_split_groups_keeps_the_block_diagonal_and_halves_the_conv():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(12, 24, 3, padding=1, groups=3, bias=False)
    with torch.no_grad():  # zero what a 6-group conv cannot hold: then the split is exact
        w = conv.weight.view(3, 2, 4, 2, 2, 3, 3)  # (group, out half, out, in half, in, kh, kw)
        w[:, 0, :, 1] = 0
        w[:, 1, :, 0] = 0
    model = torch.nn.Sequential(conv)
    x = torch.rand(2, 12, 8, 8)
    before = model(x)
    assert split_groups(model, 2) == ["0"]
    assert conv.groups == 6 and conv.weight.shape == (24, 2, 3, 3)
    assert torch.allclose(model(x), before, atol=1e-6)


def test_split_groups_on_shufflenet_where_shapes_allow():
    model = build_model(ARCH, 9)
    names = split_groups(model, 2)
    # stage 1's convs have 5 channels per group (15 mid channels, 3 groups): they cannot halve
    assert names and not any(n.startswith("features.stage1.") for n in names)
    assert all(model.get_submodule(n).groups == 6 for n in names)
    assert count_macs(model, 80)[0] < 1_688_940
    with pytest.raises(ValueError, match=r"split_groups 2: pytorchcv:fdmobilenet_wd4 has no grouped conv"):
        split_groups(build_model("pytorchcv:fdmobilenet_wd4", 9), 2, "pytorchcv:fdmobilenet_wd4")
    with pytest.raises(ValueError, match=r"split_groups: 1 must be an integer >= 2"):
        split_groups(model, 1)


# --- channel pruning (Torch-Pruning) ---------------------------------------------------------


class _Net(torch.nn.Module):
    """conv-bn-relu, a residual depthwise block, a 1x1 head: TP must keep the add consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.block = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.BatchNorm2d(8))
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(x.mean((2, 3), keepdim=True)).flatten(1)


def test_pruned_channels_are_the_weakest_and_the_rest_computes_the_same():
    torch.manual_seed(0)
    model = _Net().eval()
    dead = [1, 5]
    with torch.no_grad():  # channels 1 and 5 contribute nothing anywhere
        for layer in (model.stem[0], model.stem[1], model.block[0], model.block[1]):
            layer.weight[dead] = 0
            layer.bias[dead] = 0
        model.head.weight[:, dead] = 0
    x = torch.rand(2, 3, 16, 16)
    pruned = prune_channels(model, 0.25, 16)
    assert pruned.stem[0].out_channels == pruned.block[0].out_channels == pruned.head.in_channels == 6
    assert pruned.head.out_channels == 4  # the classifier keeps its classes
    assert torch.allclose(pruned(x), model(x), atol=1e-5)
    assert model.stem[0].out_channels == 8  # a copy was pruned


@pytest.mark.parametrize(
    "arch", ["pytorchcv:fdmobilenet_wd4", "pytorchcv:mobilenetv3_small_w7d20", "timm:mobilenetv3_small_050"]
)
def test_channel_pruning_lowers_macs_and_the_checkpoint_rebuilds_it(arch, tmp_path):
    model = build_model(arch, 3).eval()
    small, s = compress(model, 32, channel_ratio=0.3)
    assert count_macs(small, 32)[0] < 0.8 * count_macs(model, 32)[0]
    meta = {
        "arch": arch,
        "arch_kwargs": s.arch_kwargs,
        "classes": ["a", "b", "c"],
        "input_size": 32,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    save_checkpoint(tmp_path / "c.pt", small, meta)
    again, _ = load_checkpoint(tmp_path / "c.pt")  # weights_only=True inside
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(again(x), small.eval()(x))


def test_target_macs_is_met_by_the_least_pruning():
    model = build_model("pytorchcv:fdmobilenet_wd4", 9)
    full = count_macs(model, 32)[0]
    small, ratio = prune_to_macs(model, 150_000, 32)
    assert count_macs(small, 32)[0] <= 150_000 < full and 0 < ratio < 0.9
    assert count_macs(prune_channels(model, ratio - 0.01, 32), 32)[0] > 150_000  # no less pruning would do
    assert prune_to_macs(model, full, 32) == (model, 0.0)  # already within the target
    with pytest.raises(ValueError, match=r"target_macs 1,000: below what channel pruning reaches"):
        prune_to_macs(model, 1000, 32, name="fd")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channel_ratio": 1.0}, r"channel_ratio: 1.0 must be in \(0, 1\)"),
        ({"channel_ratio": -0.1}, r"channel_ratio: -0.1 must be in \(0, 1\)"),
        ({"channel_ratio": 0.3, "importance": "l3"}, "importance: 'l3' is not one of l1, l2"),
    ],
)
def test_bad_channel_pruning(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prune_channels(build_model("pytorchcv:fdmobilenet_wd4", 9), kwargs.pop("channel_ratio", 0.3), 32, **kwargs)


def test_shufflenet_channel_pruning_is_refused_with_the_way_out():
    with pytest.raises(ValueError) as e:
        compress(build_model(ARCH, 9), 32, channel_ratio=0.3, name=ARCH)
    assert "it shuffles channels (features.stage1.unit1.c_shuffle" in str(e.value)
    assert "compress.keep_blocks or compress.split_groups" in str(e.value)


# --- layer pruning by weight std, and the whole chain -----------------------------------------


def test_weight_std_keeps_the_blocks_with_the_largest_weights():
    torch.manual_seed(0)
    model = build_model(ARCH, 9)
    with torch.no_grad():  # make stage 2's blocks 3 and 6 (indices 2, 5) the near-zero ones
        for j in (2, 5):
            for p in model.features.stage2[j].parameters():
                p.mul_(1e-3)
    keep = choose_blocks(model, [4, 6, 4], "weight_std")
    assert keep[1] == [0, 1, 3, 4, 6, 7] and keep[0] == [0, 1, 2, 3]
    assert choose_blocks(model, [2, 5, 2], "first") == [[0, 1], [0, 1, 2, 3, 4], [0, 1]]


def test_layer_pruning_then_group_split_rebuilds_from_its_structure():
    torch.manual_seed(0)
    model = build_model(ARCH, 9).eval()
    small, s = compress(model, 32, keep=[2, 5, 2], selection="weight_std", split_factor=2)
    assert stage_depths(small) == [2, 5, 2] and s.split and set(s.layers) == set(s.split)
    assert s.describe() == f"blocks [2, 5, 2], {len(s.split)} grouped convs split"
    again = build_model(ARCH, 9, **s.arch_kwargs)
    again.load_state_dict(small.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(again.eval()(x), small.eval()(x))
    assert count_macs(small, 32)[0] < count_macs(build_model(ARCH, 9, keep_blocks=[2, 5, 2]), 32)[0]


def test_cli_compresses_like_the_stage():
    runner = CliRunner()
    r = runner.invoke(app, ["macs", "pytorchcv:fdmobilenet_wd4", "--size", "80", "--target-macs", "1000000"])
    assert r.exit_code == 0 and int(r.output.strip().splitlines()[-1]) <= 1_000_000
    r = runner.invoke(app, ["macs", ARCH, "--size", "80", "--keep-blocks", "2,5,2", "--split-groups", "2"])
    small, _ = compress(build_model(ARCH, 9), 80, keep=[2, 5, 2], split_factor=2)
    assert r.exit_code == 0 and int(r.output.strip().splitlines()[-1]) == count_macs(small, 80)[0] < PRUNED_MACS
    r = runner.invoke(app, ["macs", ARCH, "--size", "80", "--channel-ratio", "0.2"])
    assert r.exit_code == 2 and "it shuffles channels" in " ".join(r.output.replace("│", " ").split())


def test_recalibrate_bn_re_estimates_statistics_from_images():
    from tinycls.compress import recalibrate_bn
    from tinycls.transforms import to_input

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).train()
    model[1].running_mean.fill_(5.0)  # stale statistics, as after dropping the blocks before it
    images = torch.randint(0, 256, (8, 12, 12, 3), dtype=torch.uint8).numpy()
    weight = model[0].weight.detach().clone()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    recalibrate_bn(model, images, 16, mean, std, batch_size=4)
    with torch.no_grad():
        expected = model[0](to_input(torch.from_numpy(images), 16, mean, std)).mean((0, 2, 3))
    assert torch.allclose(model[1].running_mean, expected, atol=1e-5)
    assert model.training and torch.equal(model[0].weight, weight)  # mode restored, weights untouched


def test_a_change_a_checkpoint_cannot_record_is_refused():
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8)  # GroupNorm: not recorded
            self.head = torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.head(torch.relu(self.norm(self.conv(x))).mean((2, 3), keepdim=True)).flatten(1)

    with pytest.raises(ValueError, match=r"net: compression changed \[.norm.weight., .norm.bias.\], which"):
        compress(Net(), 16, channel_ratio=0.5, name="net")
