"""Turn a validated ImageFolder tree into the decoded cache every training stage reads.

Cache (`out/`): `{train,val}_images.npy` (N, S, S, 3) uint8 with `{train,val}_labels.npy` (N,)
int64, `test_images.npy`, `classes.json`, and `index.csv` (split, file, label) for train and
val. Test images are ordered by content hash, so neither their order nor the cache reveals a
label; their file names and labels go to a separate held-out file only the final score reads.
With test/ unlabelled, a share of train/ goes beside it instead of into the cache (tinycls.holdout).
"""

import csv
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinycls.cache import cap_per_class
from tinycls.data import (
    MAX_LISTED,
    Checked,
    DataError,
    check_files,
    check_tree,
    scan_labelled,
    scan_test,
)
from tinycls.duplicates import TWICE, in_two_classes, refuse_copies
from tinycls.errors import MissingInput
from tinycls.holdout import split_holdout, stratified, write_holdout
from tinycls.rows import Rows, save_rows

LABELLED = ("train", "val")


def _bad_report(bad: list[Checked], total: int, max_bad_fraction: float, split: str = "train/val") -> str:
    lines = "\n".join(f"  {c.path}: {c.error}" for c in bad[:MAX_LISTED])
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return (
        f"{len(bad)} of {total} {split} files are bad ({len(bad) / total:.2%} > max_bad_fraction "
        f"{max_bad_fraction:.2%}):\n{lines}{more}\nFix: repair or delete these files, or "
        "raise prepare.max_bad_fraction in params.yaml to skip them."
    )


def _labelled(per_class: dict[str, list[Path]], classes: list[str]) -> tuple[list[Path], np.ndarray]:
    files = [f for fs in per_class.values() for f in fs]
    return files, np.array([classes.index(c) for c, fs in per_class.items() for _ in fs], dtype=np.int64)


def prepare_dataset(
    root: Path,
    out: Path,
    held_out: Path,
    image_size: int,
    val_fraction: float,
    max_per_class: int,
    max_bad_fraction: float,
    seed: int,
    workers: int = 1,
    holdout_fraction: float = 0.0,
    labelled_twice: str = "stop",
) -> dict:
    """Scan, validate, split, cap and cache a dataset; returns the metrics dict.

    Args:
        root: dataset folder (`train/`, optional `val/`, `test/`); read only.
        out: cache folder (created).
        held_out: JSON file `{"classes", "files", "labels"}` for the test images in
            test_images.npy order: file paths relative to root, and labels (class indices)
            or null when test/ is unlabelled. Only the final score may read it.
        image_size: cached side in pixels (square-pad then resize).
        val_fraction: share of train held out per class when there is no val/.
        max_per_class: at most this many images per class, applied to train before the val
            split is taken from it, or to train and val/ each when val/ exists (0 = all).
        max_bad_fraction: bad train/val files allowed (then skipped), as a share of them.
            Bad test files are always an error: every test image needs a prediction.
        seed: for the val split, the holdout and the caps.
        workers: processes that decode.
        holdout_fraction: share of train held out per class (to held_out's holdout/) when test/ is unlabelled.
        labelled_twice: an image byte-identical in two class folders: "stop" (a DataError naming
            them) or "drop" (every copy left out, counted as labelled_twice_dropped).

    Raises:
        FileNotFoundError: root, train/ or test/ is missing.
        DataError: the data breaks the contract; the message names the files and the fix.
    """
    if not root.is_dir():
        raise MissingInput(
            f"{root}: no such dataset folder. Put the data in {root}/train/<class>/<image> (see docs/data.md)."
        )
    check_tree(root)
    classes, groups, test_files, test_names = _scan(root)
    made = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Decoded images go straight to a file per group, a row per file, and from there (chosen,
        # reordered) into the cache: no process holds more than a chunk of images.
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-decoding-") as tmp:
            decoded = {k: Path(tmp) / f"{k}.npy" for k in (*groups, "test")}
            checked = {k: check_files(fs, image_size, workers, decoded[k]) for k, (fs, _) in groups.items()}
            test = check_files(test_files, image_size, workers, decoded["test"])
            knobs = _Knobs(
                image_size, val_fraction, max_per_class, max_bad_fraction, seed, holdout_fraction, labelled_twice
            )
            return _validate_and_write(root, out, held_out, knobs, classes, groups, checked, test, test_names, decoded)
    except BaseException:
        if made and not any(out.parent.iterdir()):  # leave nothing behind on bad data
            out.parent.rmdir()
        raise


@dataclass(frozen=True)
class _Knobs:
    """prepare_dataset's settings that the checks, the split and the metrics use."""

    image_size: int
    val_fraction: float
    max_per_class: int
    max_bad_fraction: float
    seed: int
    holdout_fraction: float
    labelled_twice: str


def _validate_and_write(
    root: Path,
    out: Path,
    held_out: Path,
    knobs: _Knobs,
    classes: list[str],
    groups: dict[str, tuple[list[Path], np.ndarray]],
    checked: dict[str, list[Checked]],
    test: list[Checked],
    test_names: list[str] | None,
    decoded: dict[str, Path],
) -> dict:
    """prepare_dataset's checks of the decoded files, the split and the cache; its metrics."""
    val_fraction, max_bad_fraction = knobs.val_fraction, knobs.max_bad_fraction
    if bad_test := [c for c in test if c.error]:
        raise DataError(
            _bad_report(bad_test, len(test), 0.0, "test")
            + " (Bad test files cannot be skipped: every test image needs a prediction.)"
        )
    checked, twice = in_two_classes(classes, groups, checked, knobs.labelled_twice == "drop")
    bad = [c for cs in checked.values() for c in cs if c.error and c.error != TWICE]
    total = sum(len(cs) for cs in checked.values())
    if len(bad) > max_bad_fraction * total:
        raise DataError(_bad_report(bad, total, max_bad_fraction))
    splits = _split(root, classes, groups, checked, val_fraction, knobs.max_per_class, knobs.seed)
    holdout: tuple[list[Checked], np.ndarray] = ([], np.zeros(0, dtype=np.int64))
    if test_names is None and knobs.holdout_fraction > 0:  # else no labelled image is left unseen
        splits["train"], holdout = split_holdout(*splits["train"], knobs.holdout_fraction, knobs.seed)
    refuse_copies(
        splits["train"][0] + holdout[0],
        splits["val"][0],
        "val images are byte-identical to train images (they would inflate the F1 that picks the best epoch)",
        "delete one copy of each.",
    )
    refuse_copies(
        [c for k in LABELLED for c in splits[k][0]] + holdout[0],
        test,
        "test images are byte-identical to train/val images (leakage)",
        "delete the duplicates from test/ or from train/ and val/.",
    )
    _write(root, out, held_out, classes, splits, test, test_names, decoded, checked)
    write_holdout(held_out.parent / "holdout", root, decoded["train"], checked["train"], *holdout, classes)
    counts = {k: np.bincount(splits[k][1], minlength=len(classes)).tolist() for k in LABELLED}
    held = {"holdout": len(holdout[0])} if holdout[0] else {}
    return {
        "classes": len(classes),
        "image_size": knobs.image_size,
        "files_scanned": total + len(test),
        "bad_files_skipped": len(bad),
        **({"labelled_twice_dropped": twice} if knobs.labelled_twice == "drop" else {}),
        "val_source": "val/" if "val" in groups else f"stratified {val_fraction} of train/",
        "test_labelled": test_names is not None,
        "images": {k: len(splits[k][0]) for k in LABELLED} | {"test": len(test)} | held,
        "class_counts": {c: {k: counts[k][i] for k in LABELLED} for i, c in enumerate(classes)},
    }


def _scan(root: Path) -> tuple[list[str], dict[str, tuple[list[Path], np.ndarray]], list[Path], list[str] | None]:
    """(classes, {split: (files, labels)} for train and val/ when present, test files, their
    class names or None when test/ is unlabelled)."""
    train = scan_labelled(root / "train")
    classes = sorted(train)
    val = scan_labelled(root / "val") if (root / "val").exists() else None
    if val is not None and sorted(val) != classes:
        only_t, only_v = sorted(set(classes) - set(val)), sorted(set(val) - set(classes))
        raise DataError(
            f"{root}/val: class folders differ from train/ (only in train: {only_t}; "
            f"only in val: {only_v}). Give both splits the same class folders."
        )
    test_files, test_names = scan_test(root / "test", classes)
    groups = {"train": _labelled(train, classes)} | ({"val": _labelled(val, classes)} if val else {})
    return classes, groups, test_files, test_names


def _split(
    root: Path,
    classes: list[str],
    groups: dict[str, tuple[list[Path], np.ndarray]],
    checked: dict[str, list[Checked]],
    val_fraction: float,
    max_per_class: int,
    seed: int,
) -> dict[str, tuple[list[Checked], np.ndarray]]:
    """Train and val: the good files, each class capped; val held out of train (stratified)
    when there is no val/."""
    splits: dict[str, tuple[list[Checked], np.ndarray]] = {}
    for k, cs in checked.items():
        keep = [i for i, c in enumerate(cs) if not c.error]
        y = groups[k][1][keep]
        for c in range(len(classes)):
            if (n := int((y == c).sum())) < 2:
                raise DataError(
                    f"{root}/{k}/{classes[c]}: {n} usable image(s); every class "
                    "needs at least 2. Add images or remove the class folder."
                )
        idx = cap_per_class(y, max_per_class, seed)
        splits[k] = ([cs[keep[i]] for i in idx], y[idx])
    if "val" in groups:
        return splits
    cs, y = splits["train"]
    tr, va = stratified(y, "val_fraction", val_fraction, seed, "provide val/")
    return {"train": ([cs[i] for i in tr], y[tr]), "val": ([cs[i] for i in va], y[va])}


def _write(
    root: Path,
    out: Path,
    held_out: Path,
    classes: list[str],
    splits: dict[str, tuple[list[Checked], np.ndarray]],
    test: list[Checked],
    test_names: list[str] | None,
    decoded: dict[str, Path],
    checked: dict[str, list[Checked]],
) -> None:
    """The cache (test images in a label-free order) and the held-out test file names and labels;
    images are copied a chunk at a time from the `decoded` rows of each group's `checked` files."""
    out.mkdir(parents=True, exist_ok=True)
    row = {c.path: (k, i) for k, cs in checked.items() for i, c in enumerate(cs)}
    for k in LABELLED:
        cs, y = splits[k]
        group = {row[c.path][0] for c in cs}.pop()  # val comes from train/ when there is no val/
        save_rows(out / f"{k}_images.npy", Rows([decoded[group]]).take([row[c.path][1] for c in cs]))
        np.save(out / f"{k}_labels.npy", y)
    order = sorted(range(len(test)), key=lambda i: (test[i].sha256, test[i].path.name))  # label-free order
    save_rows(out / "test_images.npy", Rows([decoded["test"]]).take(order))
    (out / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
    with open(out / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "file", "label"])
        w.writerows(
            (k, c.path.relative_to(root).as_posix(), classes[y])
            for k in LABELLED
            for c, y in zip(*splits[k], strict=True)
        )
    held_out.parent.mkdir(parents=True, exist_ok=True)
    held_out.write_text(
        json.dumps(
            {
                "classes": classes,
                "files": [test[i].path.relative_to(root).as_posix() for i in order],
                "labels": [classes.index(test_names[i]) for i in order] if test_names is not None else None,
            }
        )
        + "\n"
    )
