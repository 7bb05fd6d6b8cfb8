"""tinycls.rows: a cache on disk read a batch at a time, equal to the arrays it holds."""

import numpy as np
import pytest

from tinycls.rows import Rows, create_rows, save_rows, write_rows


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (37, 4, 4, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (11, 4, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    return tmp_path, a, b


def test_rows_read_what_the_arrays_hold(files):
    tmp, a, b = files
    r = Rows([tmp / "a.npy"])
    assert r.shape == a.shape and r.dtype == a.dtype and len(r) == 37
    assert np.array_equal(r[:], a) and np.array_equal(r[5:9], a[5:9]) and np.array_equal(r[3], a[3])
    idx = np.array([36, 0, 5, 5, 6, 7, 1])  # unsorted, repeated, runs
    assert np.array_equal(r[idx], a[idx]) and np.array_equal(r[-1], a[-1])
    mask = np.arange(37) % 3 == 0
    assert np.array_equal(r[mask], a[mask]) and np.array_equal(np.asarray(r), a)


def test_concat_and_take_copy_nothing_and_equal_numpy(files):
    tmp, a, b = files
    both = Rows.concat([Rows([tmp / "a.npy"]), Rows([tmp / "b.npy"]).take([10, 0, 3]), a[:2]])
    ref = np.concatenate([a, b[[10, 0, 3]], a[:2]])
    assert len(both) == len(ref) and np.array_equal(both[:], ref)
    idx = np.random.default_rng(1).permutation(len(ref))[:20]
    assert np.array_equal(both[idx], ref[idx])
    sub = both.take(np.arange(len(ref)) >= 30)
    assert np.array_equal(sub[:], ref[30:]) and np.array_equal(sub.take([0, 2])[:], ref[[30, 32]])
    assert all(isinstance(p, np.ndarray) or p.path.suffix == ".npy" for p in both.parts)  # views of the files


def test_save_rows_writes_the_bytes_np_save_writes(files, tmp_path):
    tmp, a, b = files
    save_rows(tmp_path / "copy.npy", Rows([tmp / "a.npy"]).take(np.arange(36, -1, -1)))
    np.save(tmp_path / "ref.npy", a[::-1])
    assert (tmp_path / "copy.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()


def test_rows_written_by_offset_from_anywhere(tmp_path):
    path = tmp_path / "w.npy"
    create_rows(path, 5, (2, 2, 3))
    rows = [np.full((2, 2, 3), i, np.uint8) for i in range(5)]
    write_rows(path, 3, rows[3:])
    write_rows(path, 0, [rows[0], None, rows[2]])  # None: that row stays zero
    got = np.load(path)
    assert np.array_equal(got[[0, 2, 3, 4]], np.stack([rows[i] for i in (0, 2, 3, 4)])) and not got[1].any()
    with pytest.raises(ValueError, match="a row of 3 bytes"):
        write_rows(path, 0, [np.zeros(3, np.uint8)])


def test_a_truncated_file_is_an_error_not_garbage(files, tmp_path):
    tmp, a, _ = files
    data = (tmp / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 100])
    with pytest.raises(OSError, match="truncated"):
        Rows([tmp_path / "cut.npy"])[36]


def test_a_row_out_of_range_is_an_error_not_uninitialized_memory(files):
    tmp, a, b = files
    for r in (Rows([tmp / "a.npy", tmp / "b.npy"]), Rows([a, b]), Rows([tmp / "a.npy"]).take([3, 4])):
        n = len(r)
        for bad in ([n], [0, n + 5], [-n - 1], np.array([n - 1, n])):
            with pytest.raises(IndexError, match=f"out of range for {n} rows"):
                r[bad]
        with pytest.raises(IndexError):
            r[n]
        assert np.array_equal(r[[-n, n - 1]], np.asarray(r)[[0, n - 1]])  # in range, negatives too
