"""Networks from a spec (tinycls.specnet, the `nas:` model source): building, the template's
multiples, errors that name the spec's line, and checkpoints that rebuild without the file."""

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from tinycls.checkpoint import checkpoint_meta, load_checkpoint, save_checkpoint
from tinycls.errors import InputError
from tinycls.macs import count_macs
from tinycls.models import arch_kwargs, build_model
from tinycls.specnet import InvertedResidual, check_input, load_spec, make_divisible

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "specs" / "example.yaml"

SPEC = """\
depth_multiple: 1.0
width_multiple: 1.0
backbone:
  - [1, Conv, [16, 3, 2]]
  - [2, InvertedResidualv2, [24, 2, 2]]
  - [1, Pass, []]
  - [1, InvertedResidualv3, [5, 3.0, 24, 1, 1, 1]]
  - [1, DWConv, [24, 3, 2, null, ReLU6]]
head: 64
"""


def _write(tmp_path, text, name="net.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_spec_builds_the_network_it_describes(tmp_path):
    path = _write(tmp_path, SPEC)
    model = build_model(f"nas:{path}", 7).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    blocks = model.features
    assert [len(b) for b in blocks[:5]] == [1, 2, 1, 1, 1]  # repeats; Pass is one identity
    assert isinstance(blocks[2][0], nn.Identity)
    feats = blocks[:5](x)
    assert feats.shape == (2, 24, 4, 4)  # strides 2, 2 (first copy only), -, 1, 2: 32 -> 16 -> 8 -> 8 -> 4
    v2 = blocks[1]
    assert not v2[0].residual and v2[1].residual  # stride 2 then stride 1 with equal widths
    v3 = blocks[3][0]
    assert isinstance(v3, InvertedResidual) and v3.residual
    assert any(isinstance(m, nn.Hardswish) for m in v3.modules()) and any(
        isinstance(m, nn.Hardsigmoid) for m in v3.modules()
    )
    dw = blocks[4][0][0]
    assert dw.groups == 24 and dw.stride == (2, 2)
    head = model.output.conv
    assert head.in_channels == 64 and head.out_channels == 7 and head.bias is None


def test_width_and_depth_multiples_follow_the_template(tmp_path):
    path = _write(tmp_path, SPEC.replace("depth_multiple: 1.0", "depth_multiple: 2.0").replace(
        "width_multiple: 1.0", "width_multiple: 0.5"))  # fmt: skip
    model = build_model(f"nas:{path}", 3)
    assert len(model.features[1]) == 4 and len(model.features[0]) == 1  # r > 1 scales, r = 1 stays
    assert model.features[0][0][0].out_channels == 8  # 16 x 0.5
    assert model.features[1][0].block[-2].out_channels == make_divisible(24 * 0.5) == 16  # up to a multiple of 8
    assert model.output.conv.in_channels == 32 and model.output.conv.out_channels == 3  # head scales, classes not


def test_the_example_spec_fits_under_the_default_students_macs():
    model = build_model(f"nas:{EXAMPLE}", 10)
    macs, params = count_macs(model, 32)
    student, _ = count_macs(build_model("pytorchcv:shufflenet_g3_wd4", 10), 32)
    assert 0 < macs <= student == 256_392 and params > 0


@pytest.mark.parametrize(
    "line, message",
    [
        ("  - [1, Bottleneck, [16]]", r"net\.yaml, line 6: unknown module 'Bottleneck'; one of Conv, DWConv"),
        (
            "  - [1, InvertedResidualv2, [16, 2]]",
            r"line 6: InvertedResidualv2 takes 3 argument\(s\) \[out, t, stride\], got 2",
        ),
        ("  - [1, Conv, [0, 3, 1]]", r"line 6: Conv out 0 must be an integer in 1\.\.4096 \(zero channels"),
        ("  - [1, Conv, [16, 3, 1, null, 1, Gelu]]", r"line 6: Conv act 'Gelu' is not one of ReLU, ReLU6"),
        ("  - [1, InvertedResidualv3, [3, 2.0, 16, 2, 0, 1]]", r"line 6: InvertedResidualv3 SE 2 must be 0 or 1"),
        ("  - [0, Conv, [16]]", r"line 6: repeat 0 must be an integer in 1\.\.64"),
        ("  - [1, Conv]", r"line 6: \[1, 'Conv'\] is not \[repeat, Module, \[args\]\]"),
        ("  - [1, Conv, [16]]", r"line 6: Conv takes 2 to 6 argument\(s\) \[out, kernel, stride"),
        ("  - [1, Conv, [16, 4, 1]]", r"line 6: Conv kernel 4 must be odd for \"same\" padding"),
        ("  - [1, InvertedResidualv2, [16, .inf, 1]]", r"line 6: InvertedResidualv2 expansion t inf must be"),
        ("  - [1, [Conv], [16, 3]]", r"line 6: unknown module \['Conv'\]"),
        ("  - [100, Conv, [16, 3]]", r"line 6: repeat 100 must be an integer in 1\.\.64"),
        ("  - [1, Conv, [100000, 3]]", r"line 6: Conv out 100000 must be an integer in 1\.\.4096"),
    ],
)
def test_a_bad_spec_line_is_named_with_what_is_expected(tmp_path, line, message):
    text = SPEC.replace("  - [1, Pass, []]", line)  # the sixth line of the file
    with pytest.raises(InputError, match=message):
        load_spec(_write(tmp_path, text))


def test_bad_spec_files_and_keys(tmp_path):
    with pytest.raises(InputError, match=r"no such spec file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match=r"unknown key\(s\) \['neck'\]"):
        load_spec(_write(tmp_path, SPEC + "neck: 3\n"))
    with pytest.raises(InputError, match="width_multiple 0 must be a number in"):
        load_spec(_write(tmp_path, SPEC.replace("width_multiple: 1.0", "width_multiple: 0")))
    groups = SPEC.replace("  - [1, Pass, []]", "  - [1, Conv, [24, 3, 1, null, 5]]")
    with pytest.raises(InputError, match=r"backbone item 3: Conv groups 5 must divide its 24 input and 24 output"):
        check_input(load_spec(_write(tmp_path, groups)), 32, "net")


def test_a_repeated_conv_strides_in_its_last_copy_an_inverted_residual_in_its_first(tmp_path):
    text = SPEC.replace("  - [1, Conv, [16, 3, 2]]", "  - [2, Conv, [16, 3, 2]]")
    model = build_model(f"nas:{_write(tmp_path, text)}", 3)
    convs = [block[0] for block in model.features[0]]
    assert [c.stride for c in convs] == [(1, 1), (2, 2)]  # the template's rule for Conv and DWConv
    assert model.features[1][0].block[1][0].stride == (2, 2) and model.features[1][1].block[1][0].stride == (1, 1)


def test_more_downsampling_than_the_input_allows_names_the_item(tmp_path):
    spec = load_spec(_write(tmp_path, SPEC))
    check_input(spec, 32, "net")  # 32 -> 16 -> 8 -> 4: fine
    with pytest.raises(InputError, match=r"net, backbone item 5 \(DWConv, stride 2\): the map is already 1x1 at 4 px"):
        check_input(spec, 4, "net")
    big = load_spec(_write(tmp_path, SPEC.replace("  - [1, Pass, []]", "  - [1, Conv, [16, 7, 1, 0]]")))
    with pytest.raises(InputError, match=r"net, backbone item 3 \(Conv\): does not run on its 4x4 map at 16 px"):
        check_input(big, 16, "net")
    check_input(big, 32, "net")  # 8x8 takes a 7x7 kernel
    with pytest.raises(InputError, match=r"net\.yaml: line 3: not YAML \(expected the node content"):
        load_spec(_write(tmp_path, "head: 3\nbackbone: [1, [\n"))


def test_a_checkpoint_records_the_spec_and_rebuilds_without_the_file(tmp_path):
    path = _write(tmp_path, SPEC)
    arch = f"nas:{path}"
    torch.manual_seed(0)
    model = build_model(arch, 3).eval()
    meta = checkpoint_meta(arch, ["a", "b", "c"], 32, arch_kwargs=arch_kwargs(arch))
    assert meta["arch_kwargs"]["spec"] == load_spec(path)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, model, meta)
    path.unlink()  # the file is gone (or edited): the checkpoint still rebuilds its own network
    again, meta2 = load_checkpoint(ckpt)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again(x), model(x)) and meta2["arch"] == arch
    assert torch.load(ckpt, weights_only=True)["arch_kwargs"]["spec"]["head"] == 64  # plain types


def test_a_recorded_spec_is_checked_before_anything_is_built(tmp_path):
    path = _write(tmp_path, SPEC)
    arch, model = f"nas:{path}", build_model(f"nas:{path}", 3)
    bad = load_spec(path)
    bad["backbone"][0][1] = "__import__('os').system"
    save_checkpoint(tmp_path / "bad.pt", model, checkpoint_meta(arch, ["a", "b", "c"], 32, arch_kwargs={"spec": bad}))
    with pytest.raises(InputError, match=r"arch_kwargs\.spec .* is not what tinycls writes .*unknown module"):
        load_checkpoint(tmp_path / "bad.pt")
    other = checkpoint_meta("pytorchcv:shufflenet_g3_wd4", ["a", "b", "c"], 32, arch_kwargs={"spec": load_spec(path)})
    save_checkpoint(tmp_path / "other.pt", build_model("pytorchcv:shufflenet_g3_wd4", 3), other)
    with pytest.raises(InputError, match="a spec only for nas: networks"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "bare.pt", model, checkpoint_meta(arch, ["a", "b", "c"], 32))
    with pytest.raises(InputError, match="spec under arch_kwargs.spec"):
        load_checkpoint(tmp_path / "bare.pt")


def test_no_imagenet_weights_for_a_spec(tmp_path):
    with pytest.raises(InputError, match="has no ImageNet weights"):
        build_model(f"nas:{_write(tmp_path, SPEC)}", 3, pretrained=True)


def test_tinycls_macs_counts_a_spec(tmp_path):
    from typer.testing import CliRunner

    from tinycls.cli import app

    shutil.copy(EXAMPLE, tmp_path / "example.yaml")
    r = CliRunner().invoke(app, ["macs", f"nas:{tmp_path / 'example.yaml'}", "--size", "32", "--classes", "10"])
    assert r.exit_code == 0, r.output
    assert int(r.output.strip().splitlines()[-1]) == count_macs(build_model(f"nas:{EXAMPLE}", 10), 32)[0]


def test_a_pretrained_checkpoint_of_another_spec_under_the_same_name_is_refused(tmp_path):
    from tinycls.run import initialize

    path = _write(tmp_path, SPEC)
    arch = f"nas:{path}"
    old = load_spec(path)
    save_checkpoint(tmp_path / "pre.pt", build_model(arch, 10), checkpoint_meta(arch, list("0123456789"), 32,
                    arch_kwargs={"spec": old}))  # fmt: skip
    path.write_text(SPEC.replace("head: 64", "head: 96"))  # edited in place: same name, another network
    new = load_spec(path)
    model = build_model(arch, 3)
    with pytest.raises(InputError, match=r"pretrained nas:.* from another spec, but this model is nas:"):
        initialize(model, arch, tmp_path / "pre.pt", False, new)
    report = initialize(build_model(f"nas:{path}", 3, spec=old), arch, tmp_path / "pre.pt", False, old)
    assert report["init_transferred"] > 0  # the same spec: accepted
