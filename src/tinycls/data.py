"""The data contract: scan an ImageFolder tree, validate every file, split, cap, and cache.

Layout: `<root>/train/<class>/<image>`, optional `<root>/val/<class>/...`, and `<root>/test/`
holding unlabelled images or class folders. Nothing under <root> is ever written.
"""

import dataclasses
import hashlib
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinycls.errors import MAX_LISTED, DataError, InputError, MissingInput
from tinycls.folders import class_folders, list_files, same_name, shown, visible
from tinycls.images import DECODE_ERRORS, FORMATS, TooLarge, load_rgb, square_pad_resize
from tinycls.rows import create_rows, write_rows

PARALLEL_MIN = 256  # fewer files are decoded in this process
CHUNK = 64  # files per task sent to a decoding process


@dataclass(frozen=True)
class Checked:
    """One file after validation: its hash, its decoded pixels, or why it is bad."""

    path: Path
    sha256: str
    image: np.ndarray | None  # (S, S, 3) uint8
    error: str | None


def check_tree(root: Path) -> None:
    """Refuse, before anything is decoded, what `root` would read from elsewhere or could not
    name: symlinks whose target leaves root (DVC's own cache links are fine) and file or folder
    names that are not valid UTF-8. Dot-names are skipped, as by list_files.

    Raises:
        DataError: naming every such path, with the fix.
    """
    top, dvc_cache = root.resolve(), Path(".dvc/cache").resolve()
    outside: list[str] = []
    undecodable: list[str] = []
    for folder, dirs, files in os.walk(root):  # does not follow symlinked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in dirs + sorted(f for f in files if not f.startswith(".")):
            path = Path(folder) / name
            try:
                name.encode("utf-8")  # undecodable bytes arrive as lone surrogates
            except UnicodeEncodeError:
                undecodable.append(shown(path))
            if path.is_symlink():
                target = path.resolve()
                if not (target.is_relative_to(top) or target.is_relative_to(dvc_cache)):
                    outside.append(f"{shown(path)} -> {shown(target)}")
    if outside:
        raise DataError(
            f"{len(outside)} symlink(s) under {root} lead outside it:\n"
            + "\n".join(f"  {s}" for s in outside[:MAX_LISTED])
            + f"\nFix: copy those files into {root} (then DVC versions them), or make the folder they "
            "live in the dataset (prepare.dataset)."
        )
    if undecodable:
        raise DataError(
            f"{len(undecodable)} name(s) under {root} are not valid UTF-8:\n"
            + "\n".join(f"  {s}" for s in undecodable[:MAX_LISTED])
            + f"\nFix: rename them to UTF-8, e.g. `convmv -f latin1 -t utf8 -r --notest {root}`."
        )


def scan_labelled(split_dir: Path) -> dict[str, list[Path]]:
    """Map class name -> sorted files of a `<split>/<class>/<image>` folder.

    Raises:
        FileNotFoundError: the folder does not exist.
        DataError: loose files beside the class folders, no class folder, or an empty class.
    """
    if not split_dir.is_dir():
        raise MissingInput(f"{split_dir}: no such folder; expected {split_dir}/<class>/<image>.")
    loose = [p for p in sorted(split_dir.iterdir()) if p.is_file() and visible(p)]
    if loose:
        raise DataError(
            f"{loose[0]}: images must sit in a class folder, "
            f"{split_dir}/<class>/<image>. Move it into its class folder."
        )
    classes = class_folders(split_dir)
    if not classes:
        raise DataError(f"{split_dir}: no class folders; expected {split_dir}/<class>/<image>.")
    keys = [same_name(c) for c in classes]
    if twins := sorted({c for c, k in zip(classes, keys, strict=True) if keys.count(k) > 1}):
        raise DataError(
            f"{split_dir}: class folders {twins} differ only in case or Unicode form; merge them into one "
            "folder (or give them names that really differ)."
        )
    files = {c: list_files(split_dir / c) for c in classes}
    for c, fs in files.items():
        if not fs:
            raise DataError(f"{split_dir / c}: empty class folder. Add images or remove it.")
    return files


def scan_test(test_dir: Path, classes: list[str]) -> tuple[list[Path], list[str] | None]:
    """Scan test/: class folders named like train's (labels for the final score only), or
    unlabelled images, loose or in folders that are not class names.

    Returns:
        (all files, in a fixed order; their class names, or None when unlabelled).

    Raises:
        FileNotFoundError: test/ is missing.
        DataError: test/ is empty, or mixes train-class folders with other folders or loose images.
    """
    if not test_dir.is_dir():
        raise MissingInput(
            f"{test_dir}: no such folder; put the images to predict there "
            "(loose, or in class folders when their labels are known)."
        )
    entries = [p for p in sorted(test_dir.iterdir()) if visible(p)]
    known = [p for p in entries if p.is_dir() and p.name in classes]
    by_key = {same_name(c): c for c in classes}
    near = [
        (p.name, by_key[same_name(p.name)])
        for p in entries
        if p.is_dir() and p not in known and same_name(p.name) in by_key
    ]
    if near:
        pairs = ", ".join(f"{a!r} (train: {b!r})" for a, b in near)
        raise DataError(
            f"{test_dir}: folders {pairs} match train classes only up to case or Unicode form. Rename "
            "each to its train class exactly (its labels then go to the final score alone); as they "
            "are, test/ would be taken as unlabelled."
        )
    others = [p for p in entries if p not in known]
    if known and others:
        raise DataError(
            f"{test_dir}: {[p.name for p in known]} are train classes but {others[0].name!r} is not. "
            "Either put every test image in a class folder named like train's (labels then used "
            "only by the final score), or use no class folders (unlabelled)."
        )
    if known:
        files, labels = [], []
        for folder in known:
            if not (fs := list_files(folder)):
                raise DataError(f"{folder}: empty class folder. Add images or remove it.")
            files += fs
            labels += [folder.name] * len(fs)
        return files, labels
    if not (files := list_files(test_dir)):
        raise DataError(f"{test_dir}: empty; put the images to predict there.")
    return files, None


def check_file(path: Path, size: int) -> Checked:
    """Hash and decode one file; a bad file becomes a Checked with `error` set."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        return Checked(path, "", None, f"unreadable ({e.strerror or e})")
    digest = hashlib.sha256(raw).hexdigest()
    if not raw:
        return Checked(path, digest, None, "zero-byte file")
    try:
        return Checked(path, digest, square_pad_resize(load_rgb(path, size), size), None)
    except TooLarge as e:
        return Checked(path, digest, None, str(e))
    except MemoryError:
        return Checked(path, digest, None, "out of memory while decoding it; downscale it, or lower prepare.workers")
    except DECODE_ERRORS as e:
        why = f"{type(e).__name__}: {e}"
        return Checked(path, digest, None, f"not a readable image ({why}; formats read: {', '.join(FORMATS)})")


def _check_chunk(paths: list[Path], size: int, into: Path | None, start: int) -> list[Checked]:
    """check_file over paths; with `into`, each image goes to its row there instead of the result."""
    checked = [check_file(p, size) for p in paths]
    if into is None:
        return checked
    write_rows(into, start, [c.image for c in checked])
    return [dataclasses.replace(c, image=None) for c in checked]


def check_files(paths: list[Path], size: int, workers: int, into: Path | None = None) -> list[Checked]:
    """check_file over many paths, in order, on `workers` processes.

    Args:
        into: an .npy file to create with one (size, size, 3) row per path: each decoded image
            is written to its row there (a bad file's row stays zero) and not returned, so that
            no process ever holds more than a chunk of images. None: images in the results.

    Raises:
        DataError: a worker died (the kernel's out-of-memory killer, a crash in a decoder);
            the message names the first batch of files that did not finish.
    """
    if into is not None:
        create_rows(into, len(paths), (size, size, 3))
    chunks = [(paths[i : i + CHUNK], i) for i in range(0, len(paths), CHUNK)]
    if workers <= 1 or len(paths) < PARALLEL_MIN:
        return [c for chunk, start in chunks for c in _check_chunk(chunk, size, into, start)]
    out: list[Checked] = []
    fork = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=fork, initializer=_leave_interrupts_to_the_parent)
    try:
        futures = [pool.submit(_check_chunk, chunk, size, into, start) for chunk, start in chunks]
        for (chunk, _), future in zip(chunks, futures, strict=True):
            try:
                out += future.result()
            except BrokenProcessPool:
                raise DataError(
                    f"a decoding process died (killed by the system, most likely out of memory) while "
                    f"{workers} decoded these {len(paths)} files; the first batch that did not finish is "
                    f"{chunk[0]} .. {chunk[-1]}. Nothing was written. Fix: lower prepare.workers, or find and "
                    "downscale the huge image among them."
                ) from None
    except BaseException:  # Ctrl-C, SIGTERM, a dead worker: stop now, not after every queued chunk
        _stop(pool)
        raise
    pool.shutdown()
    return out


def _leave_interrupts_to_the_parent() -> None:
    """A decoding process ignores Ctrl-C (a terminal sends it to the whole process group): the
    parent stops the pool. SIGTERM, which the parent treats as Ctrl-C, ends a worker at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued chunks and end the running ones (ProcessPoolExecutor has no public way
    to end its workers before Python 3.14's terminate_workers)."""
    processes = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(5)


def folder_chunks(image_dir: Path, size: int, chunk_bytes: int = 64 * 2**20) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Every file under image_dir (recursive, sorted, dot-names skipped), decoded and
    square-padded by the same checks as `prepare`, a chunk of files at a time: (paths, uint8
    images (n, size, size, 3)) holding at most `chunk_bytes` of pixels, so a folder of any
    length costs the memory of one chunk.

    Raises:
        FileNotFoundError: image_dir is missing or holds no files.
        ValueError: a file is not a readable image (named in the message), when its chunk comes.
    """
    if not image_dir.is_dir():
        raise MissingInput(f"{image_dir}: no such folder of images.")
    files = list_files(image_dir)
    if not files:
        raise MissingInput(f"{image_dir}: holds no files to predict.")
    step = max(1, chunk_bytes // (3 * size * size))
    for i in range(0, len(files), step):
        checked = check_files(files[i : i + step], size, workers=1)
        if bad := next((c for c in checked if c.error), None):
            raise InputError(f"{bad.path}: {bad.error}; remove or repair it.")
        yield files[i : i + step], np.stack([c.image for c in checked])
