"""ONNX Runtime as a client of the files tinycls exports: their metadata, a CPU session, logits
for uint8 images prepared exactly as for the PyTorch model, and the parity between the two."""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinycls.errors import InputError, MissingInput
from tinycls.transforms import to_input

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
        classes, size, cache = meta["classes"], int(meta["input_size"]), int(meta["cache_size"])
        ok = isinstance(classes, list) and classes and len(meta["mean"]) == 3 and len(meta["std"]) == 3
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok or not 8 <= size <= 4096 or not 8 <= cache <= 4096:
        raise InputError(f"{path}: its {METADATA_KEY!r} metadata is damaged; re-export it with `dvc repro`.")
    return meta


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


def cpu_threads() -> int:
    """The cores this process may use (what ONNX Runtime's default thread count follows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
