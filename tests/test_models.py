import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.conftest import write_image
from tinycls.checkpoint import load_checkpoint, save_checkpoint
from tinycls.models import ConvHead, build_model

TINY = ["pytorchcv:shufflenet_g3_wd4", "pytorchcv:mobilenetv3_small_w7d20", "timm:mobilenetv3_small_050"]


@pytest.mark.parametrize("arch", TINY)
@pytest.mark.parametrize("size", [32, 48])
def test_any_input_size_and_class_count(arch, size):
    model = build_model(arch, 5).eval()
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 5)
    heads = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert heads[-1].out_channels == 5 if isinstance(heads[-1], nn.Conv2d) else heads[-1].out_features == 5
    assert heads[-1].bias is None


def test_linear_output_becomes_a_bias_free_conv_head():
    model = build_model("pytorchcv:shufflenet_g3_wd4", 9)
    assert isinstance(model.output, ConvHead) and model.output.conv.weight.shape == (9, 240, 1, 1)
    assert isinstance(model.features.final_pool, nn.AdaptiveAvgPool2d)


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("shufflenet", "expected SOURCE:NAME"),
        ("keras:resnet", "expected SOURCE:NAME with SOURCE one of timm, pytorchcv"),
        ("timm:not_a_model", "timm.list_models()"),
        ("pytorchcv:not_a_model", "pytorchcv.model_provider._models"),
    ],
)
def test_unknown_names_say_where_names_come_from(arch, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_model(arch, 3)


def _meta(classes=("a", "b", "c")):
    return {
        "arch": "pytorchcv:shufflenet_g3_wd4",
        "arch_kwargs": {},
        "classes": list(classes),
        "input_size": 32,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }


def test_checkpoint_rebuilds_its_model_and_loads_weights_only(tmp_path):
    model = build_model("pytorchcv:shufflenet_g3_wd4", 3).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, _meta())
    raw = torch.load(path, weights_only=True)  # plain types and tensors only
    assert raw["classes"] == ["a", "b", "c"]
    loaded, meta = load_checkpoint(path)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded(x), model(x)) and meta["input_size"] == 32
    assert not path.with_name("m.pt.tmp").exists()


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"not a tinycls checkpoint \(missing \['arch'"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # what timm or pytorchcv would act on: download weights, or unpickle a file of its choosing
        ({"arch_kwargs": {"pretrained": True}}, r"arch_kwargs \{'pretrained': True\}.*not \['pretrained'\]"),
        ({"arch_kwargs": {"checkpoint_path": "/tmp/evil.pth"}}, r"not \['checkpoint_path'\]"),
        ({"arch_kwargs": {"keep_blocks": ["2", 5, 2]}}, r"keep_blocks \['2', 5, 2\] .*block counts or lists"),
        ({"arch_kwargs": {"layers": {"conv": [3, 0, 1]}}}, r"arch_kwargs.layers .*\[in, out, groups\]"),
        ({"arch": "shufflenet"}, "arch 'shufflenet' is not what tinycls writes .*SOURCE:NAME"),
        ({"classes": []}, r"classes \[\] is not what tinycls writes \(a non-empty list"),
        ({"classes": ["a", "a", "b"]}, "class names, each once"),
        ({"input_size": 10**9}, "input_size 1000000000 .* from 8 to 4096 px"),
        ({"input_size": True}, "input_size True"),
        ({"std": [0.25, 0.0, 0.25]}, r"std \[0.25, 0.0, 0.25\] .* > 0"),
        ({"mean": [0.5, 0.5]}, r"mean \[0.5, 0.5\] .*three finite numbers, one per RGB channel"),
        ({"std": [0.25, float("nan"), 0.25]}, r"std \[0.25, nan, 0.25\] .*three finite numbers"),
        ({"mean": [10**400, 0.5, 0.5]}, r"mean \[1000.*\] .*three finite numbers"),  # float() overflows
    ],
)
def test_a_checkpoint_from_elsewhere_is_data_never_instructions(tmp_path, monkeypatch, change, message):
    built = []
    monkeypatch.setattr("tinycls.checkpoint.build_model", lambda *a, **k: built.append(k))
    torch.save({**_meta(), **change, "state_dict": {}}, tmp_path / "crafted.pt")
    with pytest.raises(ValueError, match=rf"crafted\.pt: .*{message}") as e:
        load_checkpoint(tmp_path / "crafted.pt")
    assert "Re-create it with `dvc repro`" in str(e.value)
    assert built == []  # refused before any factory saw a key


def _nested(depth: int) -> list:
    shared: list = ["a"]
    for _ in range(depth):
        shared = [shared, shared]  # 2**depth items when printed whole, a few bytes pickled
    return shared


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # 64 convs of 1024 channels and 15x15 kernels: ~60 GB of weights from a 2 KB file
        (
            {"arch": "nas:crafted", "arch_kwargs": {"spec": {"backbone": [[1, "Conv", [1024, 15]]] * 64, "head": 8}}},
            r"holds 14,864,\d+,\d+ weights, above the 200,000,000",
        ),
        # one BatchNorm of 10**10 features: ~40 GB
        ({"arch_kwargs": {"layers": {"features.init_block.bn": [10**10]}}}, "holds 40,000,0"),
        # the same network without its weights: refused before anything is allocated
        ({}, r"its weights are not those of the network its meta records \(\d+ tensors differ; "),
        # a field whose repr() would print 2**60 items
        ({"classes": _nested(60)}, r"classes \[\[\[\[\.\.\.\], \[\.\.\.\]\], "),
    ],
)
def test_a_crafted_checkpoint_is_refused_before_it_costs_memory(tmp_path, change, message):
    """Through `tinycls predict`: each is sized on the meta device (or printed by reprlib) and
    refused with one line, instead of allocating tens of GB (or printing for days)."""
    write_image(tmp_path / "imgs" / "0.png", 0, 0)
    torch.save({**_meta(), **change, "state_dict": {"w": torch.zeros(2)}}, tmp_path / "crafted.pt")
    assert (tmp_path / "crafted.pt").stat().st_size < 4096
    cmd = [sys.executable, "-m", "tinycls.cli", "predict", "crafted.pt", "imgs", "--out", "p.csv"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and re.search(rf"crafted\.pt: .*{message}", r.stderr), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (tmp_path / "p.csv").exists()
