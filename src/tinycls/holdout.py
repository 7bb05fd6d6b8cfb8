"""The holdout: labelled images for the final score when test/ is unlabelled.

Every other labelled image is trained on or picks epochs (val selects the best epoch with
`train_on: train`; it is trained on with `train_val`), so with an unlabelled test/ no F1 on them
is honest. `prepare` then keeps a stratified share of train/ apart (`prepare.holdout_fraction`)
and writes it beside the held-out test file, under artifacts/held_out/, which only the `score`
stage reads: the cache, and so every stage that trains or selects, never holds these images.

Folder: `images.npy` (N, S, S, 3) uint8 and `holdout.json` `{"classes", "files", "labels"}`;
empty (N = 0) when test/ is labelled or the share is 0.
"""

import json
from pathlib import Path
from typing import Protocol

import numpy as np
from sklearn.model_selection import train_test_split

from tinycls.errors import MAX_LISTED, DataError
from tinycls.rows import Rows, save_rows


class Checked(Protocol):
    """A validated file (tinycls.data.Checked; not imported: score reads this module, and the
    decoders are prepare's alone)."""

    path: Path
    sha256: str


def stratified(labels: np.ndarray, key: str, fraction: float, seed: int, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): sorted indices, `fraction` of each class held out (seeded); prepare.`key`
    names the share in the error, with `fix` as the last way out."""
    try:
        kept, held = train_test_split(np.arange(len(labels)), test_size=fraction, random_state=seed, stratify=labels)
    except ValueError as e:
        raise DataError(
            f"prepare.{key}={fraction} cannot hold out every class from {len(labels)} train images ({e}); "
            f"raise it, add images, or {fix}."
        ) from e
    return np.sort(kept), np.sort(held)


def split_holdout(
    files: list[Checked], labels: np.ndarray, fraction: float, seed: int
) -> tuple[tuple[list[Checked], np.ndarray], tuple[list[Checked], np.ndarray]]:
    """((files, labels) kept, (files, labels) held out): `fraction` of each class held out, seeded.

    Raises:
        DataError: a class too small to hold out, or a held-out file byte-identical to a kept one
            (it would inflate the final F1).
    """
    fix = "label test/ (then no holdout is taken), or set it to 0.0 (then score reports no F1: none would be honest)"
    kept, held = stratified(labels, "holdout_fraction", fraction, seed, fix)
    seen = {files[i].sha256: files[i].path for i in kept}
    if pairs := [f"  {files[i].path} == {seen[files[i].sha256]}" for i in held if files[i].sha256 in seen]:
        raise DataError(
            f"{len(pairs)} holdout images are byte-identical to train images (they would inflate the final F1):\n"
            + "\n".join(pairs[:MAX_LISTED])
            + "\nFix: delete one copy of each."
        )
    return ([files[i] for i in kept], labels[kept]), ([files[i] for i in held], labels[held])


def write_holdout(
    folder: Path,
    root: Path,
    decoded: Path,
    group: list[Checked],
    held: list[Checked],
    labels: np.ndarray,
    classes: list[str],
) -> None:
    """The holdout's files `held` (of `group`, whose decoded rows are in `decoded`) into `folder`."""
    where = {c.path: i for i, c in enumerate(group)}
    folder.mkdir(parents=True, exist_ok=True)
    save_rows(folder / "images.npy", Rows([decoded]).take(np.array([where[c.path] for c in held], dtype=np.int64)))
    files = [c.path.relative_to(root).as_posix() for c in held]
    record = {"classes": classes, "files": files, "labels": [int(y) for y in labels]}
    (folder / "holdout.json").write_text(json.dumps(record) + "\n")


def load_holdout(folder: Path) -> tuple[Rows, np.ndarray] | None:
    """(images, labels) of the holdout, or None when it is empty. For the final score only."""
    labels = np.asarray(json.loads((folder / "holdout.json").read_text())["labels"], dtype=np.int64)
    return (Rows([folder / "images.npy"]), labels) if len(labels) else None
