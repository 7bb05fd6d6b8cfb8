"""ONNX Runtime as a client of the files tinycls exports: their metadata, a CPU session, logits
for uint8 images prepared exactly as for the PyTorch model, and the parity between the two."""

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinycls.errors import InputError, MissingInput, brief
from tinycls.model_meta import MAX_NUMBERS, check_preprocessing, foreign, refusal

METADATA_KEY = "tinycls"  # the ONNX metadata entry (JSON) that carries classes, sizes and preprocessing
INPUT, OUTPUT = "input", "logits"


def read_metadata(path: Path) -> dict[str, Any]:
    """The tinycls metadata of an ONNX file.

    Raises:
        MissingInput: no such file.
        InputError: not an ONNX model, or one without tinycls metadata (exported elsewhere).
    """
    import onnx

    if not Path(path).is_file():
        raise MissingInput(f"{path}: no such ONNX file; `dvc repro` writes artifacts/export/model.onnx.")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise InputError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e}).") from None
    found = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in found:
        raise InputError(
            f"{path}: an ONNX model without tinycls metadata (key {METADATA_KEY!r}: classes, input size, "
            "mean, std, preprocessing), so its preprocessing is unknown. Export it with tinycls "
            "(the export stage), or predict with the runtime directly."
        )
    try:
        meta = json.loads(found[METADATA_KEY])
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: its {METADATA_KEY!r} metadata is not a JSON object; re-export it with `dvc repro`.")
    check_preprocessing(path, meta)
    if "cache_size" not in meta:  # optional in a checkpoint (input_size then), always in tinycls's exports
        raise refusal(path, "cache_size", None, "the side the images were cached at, 8 to 4096 px")
    meta["numbers_per_image"] = check_graph(path, proto, meta)
    return meta


CONTROL_FLOW = ("If", "Loop", "Scan")  # run subgraphs a data-dependent number of times: cannot be sized


def check_graph(path: Path, proto: Any, meta: dict[str, Any]) -> int:
    """Size an ONNX graph before ONNX Runtime loads it: one image input of the metadata's size,
    one output of a logit per class, weights inside the file (external data could name any file),
    no control flow, and every tensor's shape inferred (onnx shape inference, batch 1): their
    numbers together at most tinycls.model_meta.MAX_NUMBERS. Returns the numbers of one image's
    tensors, which bound the batch a caller runs. `proto` is changed in place (batch 1, its
    value_info dropped): pass one loaded for this check.

    Raises:
        InputError: the first rule broken, named, with the fix.
    """
    import onnx
    from onnx import shape_inference

    def refuse(what: str) -> InputError:
        return foreign(path, what, "Re-export it with `dvc repro`")

    graph = proto.graph
    if graph.sparse_initializer or proto.functions:  # tinycls writes neither; both hide tensors from the sizing
        raise refuse("it has sparse weights or model-local functions, which tinycls never exports")
    if ext := [t.name for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]:
        raise refuse(f"weights {brief(ext)} are stored outside the file (tinycls writes one self-contained file)")
    if flow := sorted({n.op_type for n in graph.node if n.op_type in CONTROL_FLOW}):
        raise refuse(f"its graph has control flow ({', '.join(flow)}), which tinycls never exports")
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    size = meta["input_size"]
    dims = _dims(inputs[0]) if inputs else []
    if len(inputs) != 1 or inputs[0].name != meta.get("input", INPUT) or dims[1:] != [3, size, size]:
        shown = [(i.name, dims) for i in inputs[:2]]
        raise refuse(
            f"its inputs {brief(shown)} are not one {brief(meta.get('input', INPUT))} of [batch, 3, {size}, {size}]"
        )
    inputs[0].type.tensor_type.shape.dim[0].dim_value = 1  # `proto` is read_metadata's own, used for this alone
    del graph.value_info[:]  # inferred afresh, never taken from the file
    try:
        inferred = shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True).graph
    except Exception as e:  # onnx raises its own InferenceError, or ValueError, per rule broken
        raise refuse(f"its graph fails ONNX shape inference ({type(e).__name__}: {brief(str(e))})") from None
    if any(d < 0 for t in graph.initializer for d in t.dims):
        raise refuse("a weight has a negative dimension")
    weights_numbers, per_image, sized = sum(math.prod(t.dims) for t in graph.initializer), 0, set()
    for v in [*inferred.value_info, *inferred.output]:
        dims = _dims(v)
        if not v.type.tensor_type.HasField("shape") or None in dims:
            raise refuse(f"the shape of its tensor {brief(v.name)} is not known before it runs, so it cannot be sized")
        per_image += math.prod(dims)
        sized.add(v.name)
    if unsized := [o for n in graph.node for o in n.output if o and o not in sized | weights]:
        raise refuse(f"ONNX shape inference gives no shape for {brief(unsized)} (an operator it does not know)")
    if (numbers := weights_numbers + per_image) > MAX_NUMBERS:
        raise refuse(
            f"its weights and one image's tensors hold {numbers:,} numbers, above the {MAX_NUMBERS:,} tinycls loads"
        )
    out = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in inferred.output]
    if len(out) != 1 or out[0] != [1, len(meta["classes"])]:
        raise refuse(f"its outputs {brief(out)} (batch 1) are not one logit per class ({len(meta['classes'])})")
    return max(per_image, 1)


def _dims(value: Any) -> list[int | None]:
    """A graph value's dimensions, None where one is symbolic, unknown or negative."""
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in dims]


def session(path: Path, threads: int = 0) -> "Any":
    """An ONNX Runtime CPU session; threads 0 = ONNX Runtime's default (all physical cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def graph_inputs(meta: dict[str, Any], images: Any, batch_size: int) -> Iterator[np.ndarray]:
    """Batches of uint8 images (N, S, S, 3) at the cache side (an array or tinycls Rows) as the
    graph's float input, prepared exactly as for the PyTorch model (tinycls.transforms.to_input)."""
    import torch  # here, not above: a file is checked (read_metadata) before PyTorch is imported

    from tinycls.transforms import to_input

    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[i : i + batch_size]))
        yield to_input(x, meta["input_size"], tuple(meta["mean"]), tuple(meta["std"])).numpy()


def onnx_logits(sess: Any, meta: dict[str, Any], images: Any, batch_size: int = 256) -> np.ndarray:
    """Logits (N, K) for uint8 images (N, S, S, 3) at the cache side (an array or tinycls Rows)."""
    names, key = [meta.get("output", OUTPUT)], meta.get("input", INPUT)
    out = [sess.run(names, {key: x})[0] for x in graph_inputs(meta, images, batch_size)]
    return np.concatenate(out) if out else np.empty((0, len(meta["classes"])), np.float32)


def calibration_sample(images: Any, n: int, seed: int) -> np.ndarray:
    """n of `images` (all when fewer), drawn without replacement by `seed`, in index order."""
    n = min(n, len(images))
    return images[np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))]


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime's logits against PyTorch's. No logit moving by more than max_abs_diff, an
    argmax can only change where PyTorch's top two were within 2 * max_abs_diff: a tie."""

    max_abs_diff: float  # max |logit difference| over every image and class
    argmax_mismatches: int  # images where the two argmaxes differ
    images: int


def parity(reference: np.ndarray, logits: np.ndarray) -> Parity:
    """Compare ONNX Runtime's logits with PyTorch's (both (N, K))."""
    diff = float(np.abs(reference - logits).max()) if len(reference) else 0.0
    return Parity(diff, int((reference.argmax(1) != logits.argmax(1)).sum()), len(reference))
