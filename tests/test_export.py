"""ONNX export, INT8 quantization and measured cost (tinycls.export), on tiny models."""

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from PIL import Image
from torch import nn

from tinycls.errors import InputError
from tinycls.export import ExportConfig, export_onnx
from tinycls.int8 import int8_model, qat_int8, quantize_int8
from tinycls.latency import latency_ms, measure
from tinycls.models import build_model
from tinycls.onnx_runtime import METADATA_KEY, onnx_logits, parity, read_metadata, session
from tinycls.predict import predict_checkpoint

ARCH = "pytorchcv:shufflenet_g3_wd4"


def _meta(size=16, cache_size=24, classes=("ant", "bee", "cat")):
    return {
        "arch": ARCH,
        "arch_kwargs": {},
        "classes": list(classes),
        "input_size": size,
        "cache_size": cache_size,
        "mean": [0.5, 0.4, 0.3],
        "std": [0.25, 0.2, 0.3],
        "stage": "student",
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random-weight ShuffleNet exported once (the exporter takes seconds)."""
    torch.manual_seed(0)
    model = build_model(ARCH, 3).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them is exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    size = export_onnx(model, _meta(), path)
    return model, path, size


def _images(n, side=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_export_matches_pytorch_at_any_batch_and_carries_its_preprocessing(exported):
    model, path, size = exported
    assert size == path.stat().st_size and not path.with_name(path.name + ".tmp").exists()
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 18
    assert not any(n.metadata_props for n in proto.graph.node)  # no per-node stack traces in the file
    meta = read_metadata(path)
    assert meta["classes"] == ["ant", "bee", "cat"] and (meta["input_size"], meta["cache_size"]) == (16, 24)
    assert meta["mean"] == [0.5, 0.4, 0.3] and "pad" in meta["preprocessing"]
    sess = session(path)
    assert sess.get_inputs()[0].shape[1:] == [3, 16, 16] and not isinstance(sess.get_inputs()[0].shape[0], int)
    images = _images(7)
    reference = predict_checkpoint(model, _meta(), images, torch.device("cpu")).numpy()
    for batch in (1, 3, 7):  # the dynamic batch dimension, and the resize from 24 to 16 px
        got = onnx_logits(sess, meta, images, batch_size=batch)
        assert got.shape == (7, 3) and np.abs(got - reference).max() < 1e-4
    check = parity(reference, onnx_logits(sess, meta, images))
    assert check.argmax_mismatches == 0 and check.images == 7 and check.max_abs_diff < 1e-4


def test_export_is_deterministic(exported, tmp_path):
    model, path, _ = exported
    again = tmp_path / "again.onnx"
    export_onnx(model, _meta(), again)
    assert again.read_bytes() == path.read_bytes()


class _Svd(nn.Module):
    def forward(self, x):
        return x * torch.linalg.svdvals(x[:, 0]).sum()


def test_an_op_onnx_cannot_express_names_the_module_and_writes_nothing(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), _Svd()), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(InputError, match=r"module `1\.1` \(_Svd\) does not export to ONNX opset 18 \(.*svd"):
        export_onnx(model, {**_meta(), "arch": "custom:svd"}, out)
    assert not out.exists() and not list(tmp_path.rglob("*.onnx*"))


def test_parity_reports_the_largest_difference_and_changed_predictions():
    reference = np.array([[2.0, 1.0, 0.0], [1.0, 1.0 + 1e-7, 0.0], [0.0, 3.0, 1.0]])
    near_tie = reference + np.array([[0, 0, 0], [1e-6, 0, 0], [0, 0, 0]])  # flips the tie only
    p = parity(reference, near_tie)
    assert (p.argmax_mismatches, p.images) == (1, 3) and p.max_abs_diff == pytest.approx(1e-6)
    wrong = reference.copy()
    wrong[0] = [0.0, 2.0, 0.0]
    assert parity(reference, wrong) == parity(reference, wrong) and parity(reference, wrong).max_abs_diff == 2.0
    assert parity(reference, reference).argmax_mismatches == 0


def test_int8_is_quantized_smaller_keeps_metadata_and_mostly_agrees(exported, tmp_path):
    model, path, _ = exported
    out = tmp_path / "model.int8.onnx"
    size = quantize_int8(path, out, _images(64, seed=1))
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    int8_weights = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert sum(np.prod(i.dims) for i in int8_weights) > 0.9 * sum(p.numel() for p in model.parameters())
    assert size == out.stat().st_size < path.stat().st_size
    meta = read_metadata(out)
    assert meta["classes"] == ["ant", "bee", "cat"] and "INT8" in meta["quantization"]
    images = _images(64, seed=2)
    fp32 = onnx_logits(session(path), read_metadata(path), images)
    q = onnx_logits(session(out), meta, images)
    assert np.abs(q - fp32).max() < 0.5 * np.abs(fp32).max()  # quantization error, not another model
    assert (q.argmax(1) == fp32.argmax(1)).mean() >= 0.8


def test_latency_and_memory_are_measured_in_a_fresh_process(exported):
    _, path, _ = exported
    t = latency_ms(path, runs=20, warmup=2)
    assert 0 < t["p50"] <= t["p90"] < 1000
    m = measure(path, ExportConfig(latency_runs=20, latency_warmup=2))
    assert m["bytes"] == path.stat().st_size
    assert 0 < m["latency_ms_p50"] <= m["latency_ms_p90"] and 0 < m["latency_ms_p50_all_threads"]
    assert m["peak_memory_bytes"] > path.stat().st_size  # at least the weights, once loaded


def test_read_metadata_refuses_files_from_elsewhere(exported, tmp_path):
    _, path, _ = exported
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(proto.SerializeToString())
    with pytest.raises(InputError, match="without tinycls metadata"):
        read_metadata(bare)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps({"classes": []})
    bare.write_bytes(proto.SerializeToString())
    with pytest.raises(InputError, match=r"classes \[\] is not what tinycls writes"):
        read_metadata(bare)
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        read_metadata(tmp_path / "junk.onnx")
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        read_metadata(tmp_path / "missing.onnx")


def _crafted(proto: onnx.ModelProto, how: str) -> onnx.ModelProto:
    """A copy of an exported model changed the way a file from elsewhere might be."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    entry = next(p for p in out.metadata_props if p.key == METADATA_KEY)
    meta = json.loads(entry.value)
    if how == "std":  # every confidence would be nan
        meta["std"] = [0, 0, 0]
    elif how == "size":  # one float batch of 256 images would be 51 GB
        meta["input_size"] = meta["cache_size"] = 4096
    elif how == "external":  # ONNX Runtime would read a file the model names
        w = out.graph.initializer[0]
        w.data_location = onnx.TensorProto.EXTERNAL
        w.external_data.add(key="location", value="/dev/zero")
        w.external_data.add(key="length", value=str(10**11))
        w.ClearField("raw_data")
    elif how == "huge":  # a 40 GB tensor from a node of a few bytes
        shape = onnx.numpy_helper.from_array(np.array([1, 10**5, 10**5], np.int64), "huge_shape")
        out.graph.initializer.append(shape)
        out.graph.node.append(onnx.helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"]))
        out.graph.output.append(onnx.helper.make_tensor_value_info("huge", onnx.TensorProto.FLOAT, None))
    elif how == "function":  # a model-local function can hide tensors from the sizing
        body = [onnx.helper.make_node("Identity", ["x"], ["y"])]
        opset = [onnx.helper.make_opsetid("", 18)]
        out.functions.append(onnx.helper.make_function("local", "F", ["x"], ["y"], body, opset_imports=opset))
    elif how == "unknown_op":  # no schema, so no inferred shape
        out.opset_import.append(onnx.helper.make_opsetid("elsewhere", 1))
        out.graph.node.append(onnx.helper.make_node("Mystery", [out.graph.input[0].name], ["m"], domain="elsewhere"))
    elif how == "no_cache_size":
        del meta["cache_size"]
    entry.value = json.dumps(meta)
    return out


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("std", r"std \[0, 0, 0\] is not what tinycls writes \(three numbers > 0\)"),
        ("size", r"its inputs .* are not one 'input' of \[batch, 3, 4096, 4096\]"),
        ("external", r"weights \[.*\] are stored outside the file"),
        ("huge", r"hold 10,000,\d+,\d+ numbers, above the 200,000,000"),
        ("function", "sparse weights or model-local functions, which tinycls never exports"),
        ("unknown_op", r"ONNX shape inference gives no shape for \['m'\]"),
        ("no_cache_size", "cache_size None is not what tinycls writes"),
    ],
)
def test_a_crafted_onnx_file_is_refused_before_onnx_runtime_loads_it(exported, tmp_path, how, message):
    """Through `tinycls predict`: the metadata by the checkpoint's rules, the graph sized by shape
    inference before any session exists."""
    _, path, _ = exported
    (tmp_path / "crafted.onnx").write_bytes(_crafted(onnx.load(str(path)), how).SerializeToString())
    (tmp_path / "imgs").mkdir()
    Image.fromarray(_images(1)[0]).save(tmp_path / "imgs" / "0.png")
    cmd = [sys.executable, "-m", "tinycls.cli", "predict", "crafted.onnx", "imgs", "--out", "p.csv"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and re.search(rf"crafted\.onnx: .*{message}", r.stderr), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"opset": 17}, r"opset: 17 is outside 18\.\.21"),
        ({"parity_tolerance": 0.0}, "parity_tolerance"),
        ({"calibration_images": 0}, "calibration_images: 0 must be >= 1"),
        ({"calibration_method": "kl"}, "calibration_method: 'kl' is not one of minmax, entropy, percentile"),
        ({"max_int8_f1_drop": 1.5}, r"max_int8_f1_drop: 1.5 must be in \[0, 1\]"),
        ({"latency_runs": 5}, "latency_runs: 5 must be >= 10"),
        ({"int8": "int4"}, "int8: 'int4' is not one of qat, ptq"),
        ({"qat_epochs": -1}, "qat_epochs: -1 must be >= 0"),
        ({"device": "tpu"}, "device: 'tpu' is not one of auto, cpu, cuda"),
    ],
)
def test_bad_export_settings(values, message):
    with pytest.raises(InputError, match=message):
        ExportConfig(**values)


def test_search_ranks_measured_latency_beside_macs():
    from tinycls.families import search, to_markdown

    rows = search([ARCH, "pytorchcv:shufflenetv2_wd2"], [16], 3, latency=True)
    assert all(r.latency_ms > 0 for r in rows) and sorted(r.latency_rank for r in rows) == [1, 2]
    fastest = min(rows, key=lambda r: r.latency_ms)
    assert fastest.latency_rank == 1
    table = to_markdown(rows)
    assert "| latency ms | MACs rank | latency rank |" in table.splitlines()[0]
    assert "latency" not in to_markdown(search([ARCH], [16], 3)).splitlines()[0]


def test_the_newest_opset_exports_too(exported, tmp_path):
    model, _, _ = exported
    export_onnx(model, _meta(), tmp_path / "21.onnx", opset=21)
    assert onnx.load(str(tmp_path / "21.onnx")).opset_import[0].version == 21


def _optimized_ops(path, tmp_path):
    """The ops ONNX Runtime really runs after its graph optimizations (QDQ fusion)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}


def test_qat_int8_runs_integer_kernels_as_simulated_and_leaves_the_model_alone(exported, tmp_path):
    from tinycls import qat

    model, path, _ = exported
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, calibration = _images(64, seed=3), _images(16, seed=4)
    p = ExportConfig(qat_epochs=1, qat_batch_size=16)
    out = tmp_path / "model.int8.onnx"
    size = qat_int8(model, _meta(), images, calibration, out, p, torch.device("cpu"), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the FP32 model is untouched
    assert not model.training
    proto = onnx.load(str(out))
    int8_weights = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert sum(np.prod(i.dims) for i in int8_weights) > 0.9 * sum(p.numel() for p in model.parameters())
    assert size == out.stat().st_size < path.stat().st_size
    meta = read_metadata(out)
    assert meta["classes"] == ["ant", "bee", "cat"] and "quantization-aware" in meta["quantization"]
    ops = _optimized_ops(out, tmp_path)
    assert {"QLinearConv", "QLinearAdd"} <= ops and "Conv" not in ops  # integer kernels, no float Conv left
    # what ONNX Runtime computes is what the fine-tuning simulated (up to integer rounding)
    tuned = qat.fine_tune(model, _meta(), images, calibration, 1, p.qat_lr, 16, p.seed, torch.device("cpu"), False)
    simulated = predict_checkpoint(qat.to_qdq(tuned), _meta(), images, torch.device("cpu")).numpy()
    fake_quant = predict_checkpoint(tuned, _meta(), images, torch.device("cpu")).numpy()
    assert np.abs(simulated - fake_quant).max() < 1e-5  # the explicit Q/DQ ops are the trained fake quantization
    got = onnx_logits(session(out), meta, images)
    assert np.abs(got - simulated).max() < 0.1 * np.abs(simulated).max()
    assert (got.argmax(1) == simulated.argmax(1)).mean() >= 0.9
    again = tmp_path / "again.int8.onnx"  # deterministic: the same file on a rerun
    qat_int8(model, _meta(), images, calibration, again, p, torch.device("cpu"), progress=False)
    assert again.read_bytes() == out.read_bytes()


def test_qat_fine_tuning_brings_the_int8_model_closer_to_fp32():
    from tinycls import qat

    torch.manual_seed(1)
    model = build_model(ARCH, 3).eval()
    images, calibration = _images(96, seed=5), _images(32, seed=6)
    reference = predict_checkpoint(model, _meta(), images, torch.device("cpu"))

    def error(epochs):
        tuned = qat.fine_tune(model, _meta(), images, calibration, epochs, 1e-4, 16, 0, torch.device("cpu"), False)
        got = predict_checkpoint(qat.to_qdq(tuned), _meta(), images, torch.device("cpu"))
        return (got - reference).pow(2).mean().item()

    untrained, trained = error(0), error(4)
    assert trained < 0.9 * untrained, (untrained, trained)


class _Loopy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        x = self.conv(x)  # a Python loop over a shape: torch.export runs it, torch.fx cannot trace it
        return torch.cat([x[:, i : i + 1] * (i + 1) for i in range(x.shape[1])], 1).mean((2, 3))


def test_qat_of_an_untraceable_model_falls_back_to_ptq_and_says_so(tmp_path, capsys):
    model, meta = _Loopy().eval(), {**_meta(), "arch": "custom:loopy"}
    fp32, out = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    export_onnx(model, meta, fp32)
    p = ExportConfig(qat_epochs=1)
    with pytest.raises(
        InputError,
        match=r"custom:loopy: quantization-aware training needs a torch\.fx-traceable"
        r" model .*`export\.int8: ptq`",
    ):
        qat_int8(model, meta, _images(8), _images(4), out, p, torch.device("cpu"), progress=False)
    assert not out.exists()
    how = int8_model(model, meta, fp32, _images(8), _images(4), out, p, torch.device("cpu"), progress=False)
    assert how == "ptq" and "quantization-aware" not in read_metadata(out)["quantization"]
    assert "custom:loopy: quantization-aware training needs" in capsys.readouterr().out
    assert int8_model(model, meta, fp32, _images(8), _images(4), out, ExportConfig(int8="ptq"),
                      torch.device("cpu")) == "ptq"  # fmt: skip
