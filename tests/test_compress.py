"""Layer pruning: the competition's ShuffleNetV1 [4-8-4] -> [2-5-2] from the library, from a
checkpoint and from the CLI, with the competition's own count as the reference."""

import pytest
import torch
from typer.testing import CliRunner

from tinycls.cli import app
from tinycls.compress import keep_blocks, stage_depths
from tinycls.macs import count_macs
from tinycls.models import build_model, load_checkpoint, save_checkpoint

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
