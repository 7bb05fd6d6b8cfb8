"""Byte-identical files in a dataset: the same image labelled with two classes, and copies across
splits (val in train, test in train/val), found by the SHA-256 tinycls.data.check_files took."""

from dataclasses import replace
from pathlib import Path

import numpy as np

from tinycls.data import Checked
from tinycls.errors import MAX_LISTED, DataError


def refuse_copies(reference: list[Checked], candidates: list[Checked], what: str, fix: str) -> None:
    """Raise DataError when a candidate file is byte-identical to a reference file."""
    seen = {c.sha256: c.path for c in reference}
    pairs = [f"  {c.path} == {seen[c.sha256]}" for c in candidates if c.sha256 in seen]
    if pairs:
        raise DataError(f"{len(pairs)} {what}:\n" + "\n".join(pairs[:MAX_LISTED]) + f"\nFix: {fix}")


TWICE = "labelled with two classes (prepare.labelled_twice: drop)"  # the error of each copy left out


def in_two_classes(
    classes: list[str],
    groups: dict[str, tuple[list[Path], np.ndarray]],
    checked: dict[str, list[Checked]],
    drop: bool,
) -> tuple[dict[str, list[Checked]], int]:
    """Images (byte-identical) labelled with two classes in train/val: a DataError naming them,
    or with `drop`, `checked` with every copy of each marked TWICE (left out like a bad file,
    but not counted as one) and how many files that is.

    Raises:
        DataError: such images, and not `drop`.
    """
    first: dict[str, tuple[Path, int]] = {}
    pairs, twice = [], set()
    for k, cs in checked.items():
        for c, y in zip(cs, groups[k][1], strict=True):
            if not c.sha256 or c.error == "zero-byte file":
                continue
            seen = first.setdefault(c.sha256, (c.path, int(y)))
            if seen[1] != y:
                pairs.append(f"  {c.path} ({classes[y]}) == {seen[0]} ({classes[seen[1]]})")
                twice.add(c.sha256)
    if pairs and not drop:
        raise DataError(
            f"{len(pairs)} image(s) are labelled with two classes (byte-identical files):\n"
            + "\n".join(pairs[:MAX_LISTED])
            + "\nFix: keep each image in its one right class folder and delete the other copy, or set "
            "prepare.labelled_twice: drop in params.yaml to leave every copy out (counted in metrics/prepare.json)."
        )
    out = lambda c: c.sha256 in twice and not c.error  # noqa: E731  (a bad file stays a bad file)
    marked = {k: [replace(c, error=TWICE) if out(c) else c for c in cs] for k, cs in checked.items()}
    return marked, sum(c.error == TWICE for cs in marked.values() for c in cs)
