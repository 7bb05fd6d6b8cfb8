"""Images as rows of .npy files on disk, read a batch at a time: a cache larger than memory.

`Rows` is what the stages hand the trainers instead of an (N, S, S, 3) array: one or more `.npy`
files (or in-memory arrays), concatenated and subset by index without copying a pixel
(`Rows.concat`, `rows.take`). Reading (`rows[i:j]`, `rows[index_array]`, `rows[i]`) returns a
plain array of just those rows, read with `os.pread`: the file's pages sit in the OS page
cache, shared and evictable, not in the process, whose resident memory holds a batch. A memory
map would do the reading too, but every page it touches counts as the process's own until
unmapped, so an epoch over a 20 GB cache would show 20 GB resident.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

READ_CHUNK = 4096  # rows per read when a whole Rows is materialized or copied


class _NpyFile:
    """One .npy file's header, and a descriptor to read its rows by offset."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or not shape:
            raise ValueError(f"{path}: not a C-ordered array of rows.")
        self.path, self.shape, self.dtype = path, shape, dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """out[i] = row rows[i]; contiguous runs of sorted rows are read in one call."""
        order = np.argsort(rows, kind="stable")
        ranked = rows[order]
        breaks = np.flatnonzero(np.diff(ranked) != 1) + 1
        for run in np.split(np.arange(len(ranked)), breaks):
            first, n = int(ranked[run[0]]), len(run)
            buf = os.pread(self.fd, n * self.row_bytes, self.offset + first * self.row_bytes)
            if len(buf) != n * self.row_bytes:
                raise OSError(f"{self.path}: truncated at row {first + len(buf) // self.row_bytes}.")
            out[order[run]] = np.frombuffer(buf, dtype=self.dtype).reshape(n, *self.shape[1:])

    def __del__(self) -> None:
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)


class Rows:
    """Rows of one or more arrays or .npy files, in order, optionally through an index.

    Args:
        parts: arrays or paths of .npy files whose rows have one shape and dtype.
        index: which rows of the concatenated parts, in which order (None: all).
    """

    def __init__(self, parts: Sequence[np.ndarray | Path | _NpyFile], index: np.ndarray | None = None) -> None:
        self.parts = [p if isinstance(p, (np.ndarray, _NpyFile)) else _NpyFile(Path(p)) for p in parts]
        if not self.parts:
            raise ValueError("Rows needs at least one part.")
        shapes = {tuple(p.shape[1:]) for p in self.parts}
        dtypes = {np.dtype(p.dtype) for p in self.parts}
        if len(shapes) != 1 or len(dtypes) != 1:
            raise ValueError(f"parts differ in row shape {shapes} or dtype {dtypes}.")
        self.row_shape, self.dtype = shapes.pop(), dtypes.pop()
        self.starts = np.cumsum([0] + [p.shape[0] for p in self.parts])
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        if self.index is not None and len(self.index) and not 0 <= self.index.min() <= self.index.max() < self.total:
            raise IndexError(f"index out of range for {self.total} rows.")

    @property
    def total(self) -> int:
        """Rows in the parts, before the index."""
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    def __len__(self) -> int:
        return self.total if self.index is None else len(self.index)

    def _global(self) -> np.ndarray:
        return np.arange(self.total, dtype=np.int64) if self.index is None else self.index

    def take(self, which: np.ndarray | Sequence[int]) -> "Rows":
        """A view of some rows (integer indices or a boolean mask), copying no pixel."""
        which = np.asarray(which)
        if which.dtype == bool:
            which = np.flatnonzero(which)
        return Rows(self.parts, self._global()[which])

    @staticmethod
    def concat(items: Sequence["Rows | np.ndarray"]) -> "Rows":
        """The rows of each item after the other's, copying no pixel."""
        items = [r if isinstance(r, Rows) else Rows([r]) for r in items]
        parts, index, offset = [], [], 0
        for r in items:
            parts += r.parts
            index.append(r._global() + offset)
            offset += r.total
        return Rows(parts, np.concatenate(index))

    def __getitem__(self, key: int | slice | np.ndarray | Sequence[int]) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        if isinstance(key, slice):
            rows = np.arange(len(self), dtype=np.int64)[key]
        elif isinstance(key, tuple):
            raise TypeError("Rows takes one index (rows); slice the returned array for the rest.")
        else:
            rows = np.asarray(key)
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
            rows = np.where(rows < 0, rows + len(self), rows)
        if len(rows) and not 0 <= rows.min() <= rows.max() < len(self):  # else rows of `out` stay uninitialized
            raise IndexError(f"rows {rows.min()}..{rows.max()} out of range for {len(self)} rows of {self!r}.")
        g = rows if self.index is None else self.index[rows]
        out = np.empty((len(g), *self.row_shape), dtype=self.dtype)
        part = np.searchsorted(self.starts, g, side="right") - 1
        for i, p in enumerate(self.parts):
            sel = np.flatnonzero(part == i)
            if not len(sel):
                continue
            local = g[sel] - self.starts[i]
            if isinstance(p, np.ndarray):
                out[sel] = p[local]
            elif len(sel) == len(g):  # all from this file: read straight into the result
                p.read(local, out)
            else:
                chunk = np.empty((len(sel), *self.row_shape), dtype=self.dtype)
                p.read(local, chunk)
                out[sel] = chunk
        return out

    def chunks(self, n: int = READ_CHUNK):
        """Consecutive blocks of at most n rows, as arrays."""
        for i in range(0, len(self), n):
            yield self[i : i + n]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    def __repr__(self) -> str:
        files = [str(p.path) if isinstance(p, _NpyFile) else "array" for p in self.parts]
        return f"Rows({len(self)} x {self.row_shape} {self.dtype}, from {files})"


def save_rows(path: Path, rows: Rows | np.ndarray) -> None:
    """Write rows as an .npy file (the same bytes as np.save), a chunk at a time."""
    rows = rows if isinstance(rows, Rows) else Rows([rows])
    header = {"descr": np.lib.format.dtype_to_descr(rows.dtype), "fortran_order": False, "shape": rows.shape}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for block in rows.chunks():
            f.write(np.ascontiguousarray(block).tobytes())
    os.replace(tmp, path)


def create_rows(path: Path, n: int, row_shape: tuple[int, ...], dtype: np.dtype = np.uint8) -> None:
    """An .npy file of n zero rows (sparse on disk until written), for write_rows."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (n, *row_shape)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.truncate(f.tell() + n * int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize)


def write_rows(path: Path, start: int, rows: Sequence[np.ndarray | None]) -> None:
    """Write rows start, start + 1, ... of an .npy file made by create_rows (None: leave that
    row); from any process, each writing its own rows."""
    f = _NpyFile(path)
    fd = os.open(path, os.O_WRONLY)
    try:
        for i, row in enumerate(rows):
            if row is not None:
                data = np.ascontiguousarray(row, dtype=f.dtype).tobytes()
                if len(data) != f.row_bytes:
                    raise ValueError(f"{path}: a row of {len(data)} bytes, rows are {f.row_bytes}.")
                os.pwrite(fd, data, f.offset + (start + i) * f.row_bytes)
    finally:
        os.close(fd)
