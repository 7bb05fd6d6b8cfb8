"""Turn a validated ImageFolder tree into the decoded cache every training stage reads.

Cache layout (`out/`): `<split>_images.npy` (N, S, S, 3) uint8, `<split>_labels.npy` (N,) int64
for train and val, `test_images.npy`, `index.csv` (split, file, label; test rows unlabelled),
`classes.json`. The test split's labels go to a separate file that only the final score reads.
"""

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from tinycls.data import MAX_LISTED, Checked, DataError, cap_per_class, check_files, scan_labelled, scan_test

SPLITS = ("train", "val", "test")


def _bad_report(bad: list[Checked], total: int, max_bad_fraction: float) -> str:
    lines = "\n".join(f"  {c.path}: {c.error}" for c in bad[:MAX_LISTED])
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return (
        f"{len(bad)} of {total} files are bad ({len(bad) / total:.2%} > max_bad_fraction "
        f"{max_bad_fraction:.2%}):\n{lines}{more}\nFix: repair or delete these files, or "
        "raise prepare.max_bad_fraction in params.yaml to skip them."
    )


def _leaks(labelled: list[Checked], test: list[Checked]) -> list[str]:
    seen = {c.sha256: c.path for c in labelled}
    return [f"  {c.path} == {seen[c.sha256]}" for c in test if c.sha256 in seen]


def prepare_dataset(
    root: Path,
    out: Path,
    test_labels_out: Path,
    image_size: int,
    val_fraction: float,
    max_per_class: int,
    max_bad_fraction: float,
    seed: int,
    workers: int = 1,
) -> dict:
    """Scan, validate, split, cap and cache a dataset; returns the metrics dict.

    Args:
        root: dataset folder (`train/`, optional `val/`, `test/`); read only.
        out: cache folder (created).
        test_labels_out: JSON file for the test labels, written only when test/ has class
            folders; `{"classes": [...], "labels": [...]}` in test_images.npy order.
        image_size: cached side in pixels (square-pad then resize).
        val_fraction: share of train held out per class when there is no val/.
        max_per_class: keep at most this many images per class in train and in val (0 = all).
        max_bad_fraction: bad files allowed (then skipped) as a share of all files.
        seed: for the val split and the caps.
        workers: processes that decode.

    Raises:
        FileNotFoundError: root, train/ or test/ is missing.
        DataError: the data breaks the contract; the message names the files and the fix.
        ValueError: a parameter is out of range.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: expected a value in (0, 1).")
    if not 0.0 <= max_bad_fraction < 1.0:
        raise ValueError(f"max_bad_fraction={max_bad_fraction}: expected a value in [0, 1).")
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no such dataset folder. Put the data in "
            f"{root}/train/<class>/<image> (see README, 'Your own data')."
        )
    train = scan_labelled(root / "train")
    classes = sorted(train)
    val = scan_labelled(root / "val") if (root / "val").exists() else None
    if val is not None and sorted(val) != classes:
        only_t, only_v = sorted(set(classes) - set(val)), sorted(set(val) - set(classes))
        raise DataError(
            f"{root}/val: class folders differ from train/ (only in train: {only_t}; "
            f"only in val: {only_v}). Give both splits the same class folders."
        )
    test_per_class, test_files = scan_test(root / "test")
    if test_per_class is not None and set(test_per_class) - set(classes):
        raise DataError(
            f"{root}/test: classes {sorted(set(test_per_class) - set(classes))} are "
            "not in train/; every test class needs training images."
        )

    def labelled(per_class: dict[str, list[Path]]) -> tuple[list[Path], list[int]]:
        pairs = [(f, classes.index(c)) for c, fs in per_class.items() for f in fs]
        return [f for f, _ in pairs], [y for _, y in pairs]

    groups = {"train": labelled(train), "test": (test_files, None)}
    if val is not None:
        groups["val"] = labelled(val)
    total = sum(len(fs) for fs, _ in groups.values())
    checked = {k: check_files(fs, image_size, workers) for k, (fs, _) in groups.items()}
    bad = [c for cs in checked.values() for c in cs if c.error]
    if len(bad) > max_bad_fraction * total:
        raise DataError(_bad_report(bad, total, max_bad_fraction))
    leaks = _leaks(
        [c for k, cs in checked.items() if k != "test" for c in cs if not c.error],
        [c for c in checked["test"] if not c.error],
    )
    if leaks:
        raise DataError(
            f"{len(leaks)} test images are byte-identical to labelled images "
            "(leakage):\n"
            + "\n".join(leaks[:MAX_LISTED])
            + "\nFix: delete the duplicates from test/ or from train/ and val/."
        )

    splits: dict[str, tuple[list[Checked], np.ndarray]] = {}
    for k, cs in checked.items():
        ys = groups[k][1]
        keep = [i for i, c in enumerate(cs) if not c.error]
        if k == "test":
            label_of = {f: classes.index(c) for c, fs in (test_per_class or {}).items() for f in fs}
            labels = np.array([label_of.get(f, -1) for f in test_files], dtype=np.int64)
            splits[k] = ([cs[i] for i in keep], labels[keep])
            continue
        y = np.asarray(ys, dtype=np.int64)[keep]
        for c in range(len(classes)):
            if (n := int((y == c).sum())) < 2:
                raise DataError(
                    f"{root}/{k}/{classes[c]}: {n} usable image(s); every class "
                    "needs at least 2. Add images or remove the class folder."
                )
        idx = cap_per_class(y, max_per_class, seed)
        splits[k] = ([cs[keep[i]] for i in idx], y[idx])
    if val is None:
        cs, y = splits["train"]
        try:
            tr, va = train_test_split(np.arange(len(y)), test_size=val_fraction, random_state=seed, stratify=y)
        except ValueError as e:
            raise ValueError(
                f"val_fraction={val_fraction} cannot hold out every class from "
                f"{len(y)} train images ({e}); raise it or add images."
            ) from e
        tr, va = np.sort(tr), np.sort(va)
        splits["train"], splits["val"] = ([cs[i] for i in tr], y[tr]), ([cs[i] for i in va], y[va])

    out.mkdir(parents=True, exist_ok=True)
    for k in SPLITS:
        cs, y = splits[k]
        np.save(out / f"{k}_images.npy", np.stack([c.image for c in cs]))
        if k != "test":
            np.save(out / f"{k}_labels.npy", y)
    (out / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
    with open(out / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "file", "label"])
        for k in SPLITS:
            cs, y = splits[k]
            for c, label in zip(cs, y, strict=True):
                w.writerow([k, c.path.relative_to(root).as_posix(), "" if k == "test" else classes[label]])
    test_labelled = test_per_class is not None
    test_labels_out.parent.mkdir(parents=True, exist_ok=True)
    test_labels_out.write_text(
        json.dumps({"classes": classes, "labels": splits["test"][1].tolist() if test_labelled else None}) + "\n"
    )
    counts = {k: np.bincount(splits[k][1][splits[k][1] >= 0], minlength=len(classes)).tolist() for k in SPLITS}
    return {
        "classes": len(classes),
        "image_size": image_size,
        "files_scanned": total,
        "bad_files_skipped": len(bad),
        "val_source": "val/" if val is not None else f"stratified {val_fraction} of train/",
        "test_labelled": test_labelled,
        "images": {k: len(splits[k][0]) for k in SPLITS},
        # per class, in class order; test counts only when its labels exist (else zeros)
        "class_counts": {c: {k: counts[k][i] for k in SPLITS} for i, c in enumerate(classes)},
    }


def load_split(cache: Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(images (N, S, S, 3) uint8, labels (N,) int64 or None for test) from a prepared cache."""
    images = np.load(cache / f"{split}_images.npy")
    labels_path = cache / f"{split}_labels.npy"
    return images, (np.load(labels_path) if labels_path.exists() else None)


def load_classes(cache: Path) -> list[str]:
    return json.loads((cache / "classes.json").read_text())


def list_test_files(cache: Path) -> list[str]:
    """Test file paths (relative to the dataset root), in test_images.npy order."""
    with open(cache / "index.csv", newline="") as f:
        return [r["file"] for r in csv.DictReader(f) if r["split"] == "test"]
