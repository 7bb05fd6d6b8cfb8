"""The data contract: each bad input gets a message naming the file and the fix, and data/ is
never modified."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLASSES, make_imagefolder, tree_digest, write_image
from tinycls.cache import load_classes, load_held_out, load_split
from tinycls.data import DataError
from tinycls.holdout import load_holdout
from tinycls.prepare import prepare_dataset


def run(root: Path, tmp_path: Path, **kw):
    args = dict(image_size=16, val_fraction=0.25, max_per_class=0, max_bad_fraction=0.0, seed=0, workers=1)
    args.update(kw)
    return prepare_dataset(root, tmp_path / "cache", tmp_path / "held_out.json", **args)


def test_prepares_cache_splits_and_counts(dataset, tmp_path):
    m = run(dataset, tmp_path)
    cache = tmp_path / "cache"
    assert load_classes(cache) == list(CLASSES)
    x, y = load_split(cache, "train")
    vx, vy = load_split(cache, "val")
    tx, ty = load_split(cache, "test")
    assert x.shape == (18, 16, 16, 3) and vx.shape == (6, 16, 16, 3) and tx.shape == (9, 16, 16, 3)
    assert sorted(np.bincount(vy).tolist()) == [2, 2, 2]  # stratified
    assert m["images"] == {"train": 18, "val": 6, "test": 9} and m["test_labelled"] is True
    assert m["class_counts"] == {c: {"train": 6, "val": 2} for c in CLASSES}
    files, labels = load_held_out(tmp_path / "held_out.json")
    assert sorted(files) == sorted(f"test/{c}/{c}{i}.png" for c in CLASSES for i in range(3))
    assert [CLASSES[label] for label in labels] == [f.split("/")[1] for f in files]


def test_the_cache_holds_no_test_label(dataset, tmp_path):
    """Trainers read the cache: test labels must not be there, nor recoverable from the order."""
    run(dataset, tmp_path)
    cache = tmp_path / "cache"
    assert load_split(cache, "test")[1] is None and "test" not in (cache / "index.csv").read_text()
    _, labels = load_held_out(tmp_path / "held_out.json")
    assert labels.tolist() != sorted(labels.tolist())  # hash order, not class-folder order
    assert sorted(p.name for p in cache.iterdir()) == [
        "classes.json",
        "index.csv",
        "test_images.npy",
        "train_images.npy",
        "train_labels.npy",
        "val_images.npy",
        "val_labels.npy",
    ]


def test_same_seed_same_split_other_seed_other_split(dataset, tmp_path):
    run(dataset, tmp_path / "a")
    run(dataset, tmp_path / "b")
    run(dataset, tmp_path / "c", seed=1)
    va, vb, vc = (load_split(tmp_path / k / "cache", "val")[0] for k in "abc")
    assert np.array_equal(va, vb) and not np.array_equal(va, vc)


def test_cap_per_class(dataset, tmp_path):
    m = run(dataset, tmp_path, max_per_class=4)
    assert m["class_counts"] == {c: {"train": 3, "val": 1} for c in CLASSES}


def test_existing_val_is_used(tmp_path):
    root = make_imagefolder(tmp_path / "d", val=True)
    m = run(root, tmp_path)
    assert m["val_source"] == "val/" and m["images"]["val"] == 9


def test_unlabelled_test(tmp_path):
    root = make_imagefolder(tmp_path / "d", labelled_test=False)
    m = run(root, tmp_path)
    assert m["test_labelled"] is False and m["images"]["test"] == 9
    files, labels = load_held_out(tmp_path / "held_out.json")
    assert labels is None and len(files) == 9


def _rows(images) -> set[bytes]:
    return {np.asarray(images[i]).tobytes() for i in range(len(images))}


def test_unlabelled_test_holds_out_a_share_of_train_that_only_the_score_reads(tmp_path):
    """With test/ unlabelled, val is trained on or picks epochs: the final F1 needs images no stage
    saw. They leave the cache (which every training stage reads) for the score's own folder."""
    root = make_imagefolder(tmp_path / "d", n_train=12, labelled_test=False)
    m = run(root, tmp_path, holdout_fraction=1 / 3)
    cache, held = tmp_path / "cache", load_holdout(tmp_path / "holdout")
    assert held is not None
    images, labels = held
    assert m["images"] == {"train": 18, "val": 9, "test": 9, "holdout": 9} and np.bincount(labels).tolist() == [3, 3, 3]
    record = json.loads((tmp_path / "holdout" / "holdout.json").read_text())
    assert [f.split("/")[1] for f in record["files"]] == [CLASSES[y] for y in labels]  # train/<class>/<file>
    index = (cache / "index.csv").read_text()
    assert not any(f in index for f in record["files"])
    seen = set().union(*(_rows(load_split(cache, k)[0]) for k in ("train", "val", "test")))
    assert len(_rows(images)) == 9 and not _rows(images) & seen  # in no split a stage reads
    # the same data with a labelled test/, or with no share: no holdout, train as before
    labelled = run(make_imagefolder(tmp_path / "l", n_train=12), tmp_path / "l_out", holdout_fraction=1 / 3)
    assert labelled["images"]["train"] == 27 and load_holdout(tmp_path / "l_out" / "holdout") is None
    assert run(root, tmp_path / "none", holdout_fraction=0.0)["images"] == {"train": 27, "val": 9, "test": 9}
    assert load_holdout(tmp_path / "none" / "holdout") is None


def test_holdout_too_small_for_a_class_and_a_holdout_copy_of_a_train_image(tmp_path):
    root = make_imagefolder(tmp_path / "d", labelled_test=False)
    with pytest.raises(DataError, match=r"prepare.holdout_fraction=0.05 cannot hold out every class"):
        run(root, tmp_path / "small", holdout_fraction=0.05)
    for i in range(8):  # every bee a copy of one: whichever is held out has a twin in train
        (root / "train" / "bee" / f"{i}.png").write_bytes((root / "train" / "bee" / "0.png").read_bytes())
    with pytest.raises(DataError, match="holdout images are byte-identical to train images"):
        run(root, tmp_path / "copy", val_fraction=0.5, holdout_fraction=0.5)


def test_unlabelled_test_in_non_class_folders_and_hidden_paths_ignored(tmp_path):
    root = make_imagefolder(tmp_path / "d", labelled_test=False)
    write_image(root / "test" / "batch2" / "x.png", 0, 50)
    write_image(root / "test" / ".ipynb_checkpoints" / "y.png", 0, 51)
    write_image(root / "train" / "ant" / ".ipynb_checkpoints" / "z.png", 0, 52)
    m = run(root, tmp_path)
    assert m["test_labelled"] is False and m["images"]["test"] == 10
    assert m["files_scanned"] == 24 + 10


def _truncated(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:40])


BAD_FILES = {
    "truncated": (_truncated, "not a readable image"),
    "corrupt": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20), "not a readable image"),
    "zero-byte": (lambda p: p.write_bytes(b""), "zero-byte file"),
    "non-image": (lambda p: p.unlink() or p.with_suffix(".txt").write_text("notes"), "not a readable image"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_file_is_named_with_the_fix_and_data_untouched(dataset, tmp_path, kind):
    damage, reason = BAD_FILES[kind]
    target = dataset / "train" / "bee" / "3.png"
    damage(target)
    bad = target if target.exists() else target.with_suffix(".txt")
    before = tree_digest(dataset)
    with pytest.raises(DataError) as e:
        run(dataset, tmp_path)
    assert str(bad) in str(e.value) and reason in str(e.value)
    assert "prepare.max_bad_fraction" in str(e.value)
    assert tree_digest(dataset) == before


def test_unreadable_file(dataset, tmp_path, monkeypatch):
    target = dataset / "train" / "cat" / "1.png"
    real = Path.read_bytes

    def deny(self: Path) -> bytes:
        if self == target:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(DataError, match="unreadable.*Permission denied"):
        run(dataset, tmp_path)


def test_bad_files_below_threshold_are_skipped_and_counted(dataset, tmp_path):
    (dataset / "train" / "ant" / "0.png").write_bytes(b"")
    m = run(dataset, tmp_path, max_bad_fraction=0.1)
    assert m["bad_files_skipped"] == 1
    assert m["images"]["train"] + m["images"]["val"] == 23


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "train" / "dog").mkdir(), "train/dog: empty class folder"),
        (lambda r: write_image(r / "train" / "loose.png", 0, 99), "must sit in a class folder"),
        (
            lambda r: [p.unlink() for p in sorted((r / "train" / "cat").iterdir())[1:]],
            "train/cat: 1 usable image(s); every class needs at least 2",
        ),
        (lambda r: write_image(r / "test" / "x.png", 0, 98), "are train classes but 'x.png' is not"),
        (lambda r: write_image(r / "test" / "dog" / "0.png", 0, 97), "are train classes but 'dog' is not"),
    ],
    ids=["empty-class", "loose-file", "one-image-class", "mixed-test", "unknown-test-class"],
)
def test_structure_errors(dataset, tmp_path, damage, message):
    damage(dataset)
    before = tree_digest(dataset)
    with pytest.raises(DataError) as e:
        run(dataset, tmp_path)
    assert message in str(e.value)
    assert tree_digest(dataset) == before


def test_val_classes_must_match_train(tmp_path):
    root = make_imagefolder(tmp_path / "d", val=True)
    for p in (root / "val" / "cat").iterdir():
        p.rename(root / "val" / "bee" / ("c" + p.name))
    (root / "val" / "cat").rmdir()
    with pytest.raises(DataError, match=r"only in train: \['cat'\]"):
        run(root, tmp_path)


def test_bad_test_file_is_never_skipped(dataset, tmp_path):
    (dataset / "test" / "cat" / "cat1.png").write_bytes(b"")
    with pytest.raises(DataError) as e:
        run(dataset, tmp_path, max_bad_fraction=0.5)
    assert "test/cat/cat1.png: zero-byte file" in str(e.value) and "every test image needs a prediction" in str(e.value)


def test_duplicate_between_train_and_val(tmp_path):
    root = make_imagefolder(tmp_path / "d", val=True)
    copy = root / "val" / "ant" / "1.png"
    copy.write_bytes((root / "train" / "ant" / "5.png").read_bytes())
    with pytest.raises(DataError) as e:
        run(root, tmp_path)
    assert "val images are byte-identical to train images" in str(e.value) and str(copy) in str(e.value)


def test_leakage_between_train_and_test(dataset, tmp_path):
    leaked = dataset / "test" / "bee" / "bee0.png"
    leaked.write_bytes((dataset / "train" / "bee" / "2.png").read_bytes())
    before = tree_digest(dataset)
    with pytest.raises(DataError) as e:
        run(dataset, tmp_path)
    assert "leakage" in str(e.value) and str(leaked) in str(e.value) and "train/bee/2.png" in str(e.value)
    assert tree_digest(dataset) == before


def test_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        run(tmp_path / "nope", tmp_path)
    root = make_imagefolder(tmp_path / "d")
    os.rename(root / "test", tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="test: no such folder"):
        run(root, tmp_path)


def test_parallel_decoding_matches_serial(tmp_path):
    root = make_imagefolder(tmp_path / "d", n_train=90)  # > 256 files: the pool path
    run(root, tmp_path / "serial", workers=1)
    run(root, tmp_path / "pool", workers=2)
    for split in ("train", "val", "test"):
        a, b = (load_split(tmp_path / k / "cache", split)[0] for k in ("serial", "pool"))
        assert np.array_equal(a, b)


def test_a_decoding_process_that_dies_is_an_error_not_a_hang(tmp_path, monkeypatch):
    import signal

    from tinycls import data

    root = make_imagefolder(tmp_path / "d", n_train=6)
    boom = root / "train" / "bee" / "2.png"
    real = data.check_file

    def dies_on_boom(path: Path, size: int):  # as the kernel's out-of-memory killer would
        if path == boom:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, size)

    monkeypatch.setattr(data, "check_file", dies_on_boom)
    monkeypatch.setattr(data, "PARALLEL_MIN", 1)
    monkeypatch.setattr(data, "CHUNK", 4)

    def hung(*_):
        raise AssertionError("check_files hung after a worker died")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        with pytest.raises(DataError, match=r"a decoding process died .* Fix: lower prepare.workers") as e:
            run(root, tmp_path, workers=2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert str(root / "train") in str(e.value) and not (tmp_path / "cache").exists()


def test_class_folders_equal_only_up_to_case_or_unicode_form(tmp_path):
    nfc, nfd = "caf\u00e9", "cafe\u0301"  # the same word, as macOS and Linux may each write it
    root = make_imagefolder(tmp_path / "d")
    (root / "train" / "cat").rename(root / "train" / nfc)
    (root / "test" / "cat").rename(root / "test" / nfd)
    before = tree_digest(root)
    with pytest.raises(DataError, match="match train classes only up to case or Unicode form") as e:
        run(root, tmp_path)
    assert repr(nfd) in str(e.value) and tree_digest(root) == before  # never a silent 'unlabelled'
    (root / "test" / nfd).rename(root / "test" / nfc)
    (root / "train" / "ant").rename(root / "train" / "Bee")  # beside bee/
    with pytest.raises(DataError, match=r"class folders \['Bee', 'bee'\] differ only in case"):
        run(root, tmp_path)


SLOW_PREPARE = """
import runpy, time
import tinycls.data as data
decode = data.check_file
def slow(path, size):  # 40 ms a file: the queued chunks would take about 10 s to drain
    time.sleep(0.04)
    return decode(path, size)
data.check_file = slow
runpy.run_module("stages.prepare", run_name="__main__")
"""


def test_ctrl_c_stops_prepare_within_a_second_and_leaves_nothing(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: the decoding processes must leave it to
    the stage, which cancels the queued chunks and ends the running ones instead of draining them."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["prepare"].update(dataset="tiny", image_size=16, max_per_class=0, workers=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data = make_imagefolder(tmp_path / "data" / "tiny", n_train=160)  # 480 files: decoded by 2 processes
    before = tree_digest(data)
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}:{root}"}
    cmd = [sys.executable, "-c", SLOW_PREPARE]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "artifacts").glob(".prepare-decoding-*/train.npy")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # well inside the decoding
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1]
    took = time.monotonic() - sent
    assert proc.returncode == 130 and "Interrupted" in stderr and "Traceback" not in stderr, stderr
    assert took < 1.5, f"prepare took {took:.1f} s to stop"
    assert not (tmp_path / "artifacts").exists() and tree_digest(data) == before
