"""`tinycls predict`: a folder of images of any length through a checkpoint or its ONNX export,
streamed in chunks to a CSV, in bounded memory."""

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

BATCH_BYTES = 64 * 2**20  # float input of one forward pass in predict_folder, whatever the model's input_size
BATCH_NUMBERS = 50_000_000  # an ONNX graph's tensors over one batch (200 MB as float32), by its sizing at batch 1


def bounded_batch(input_size: int, batch_size: int = 512) -> int:
    """batch_size, lowered so one batch's float input (3 x input_size^2 x 4 bytes an image) stays
    within BATCH_BYTES: a model recording input_size 4096 predicts one image at a time."""
    return max(1, min(batch_size, BATCH_BYTES // (12 * input_size**2)))


def predict_folder(model_file: Path, image_dir: Path, out: Path, device: str = "auto") -> int:
    """Predict every image under image_dir with a tinycls checkpoint (.pt) or its ONNX export
    (.onnx, ONNX Runtime's CPU) and write `out`, a CSV of file, prediction, confidence. The
    folder streams through in chunks (tinycls.data.folder_chunks) and the rows go out as they
    come, so memory does not grow with the folder; `out` appears only when every image is done.

    Returns:
        The number of images predicted.
    """
    from tinycls.data import folder_chunks

    if model_file.suffix == ".onnx":
        from tinycls.onnx_runtime import onnx_logits, read_metadata, session

        meta = read_metadata(model_file)  # before PyTorch is imported: a refusal costs little
        import torch

        sess, side = session(model_file), meta["cache_size"]

        def logits(images: np.ndarray) -> Any:
            batch = min(bounded_batch(meta["input_size"], 256), max(1, BATCH_NUMBERS // meta["numbers_per_image"]))
            return torch.from_numpy(onnx_logits(sess, meta, images, batch))
    else:
        from tinycls.checkpoint import load_checkpoint
        from tinycls.device import resolve_device
        from tinycls.predict import predict_checkpoint

        dev = resolve_device(device)
        model, meta = load_checkpoint(model_file, dev)
        # as the pipeline: square-pad and resize to the cache's side, then (in predict_checkpoint) to the model's
        side = meta.get("cache_size", meta["input_size"])

        def logits(images: np.ndarray) -> Any:
            return predict_checkpoint(model, meta, images, dev, bounded_batch(meta["input_size"]))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, done = out.with_name(f".{out.name}.tmp"), 0  # a dot-name: never listed as an image, even in image_dir
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "prediction", "confidence"])
            for files, images in folder_chunks(image_dir, side):
                conf, pred = logits(images).softmax(1).max(1)
                for path, c, p in zip(files, pred.tolist(), conf.tolist(), strict=True):
                    w.writerow([path.relative_to(image_dir).as_posix(), meta["classes"][c], f"{p:.6f}"])
                done += len(files)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return done
