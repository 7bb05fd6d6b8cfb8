import csv

from typer.testing import CliRunner

from tests.conftest import write_image
from tinycls.checkpoint import save_checkpoint
from tinycls.cli import app
from tinycls.models import build_model

runner = CliRunner()


def test_help_explains_each_command():
    out = runner.invoke(app, ["--help"]).output
    panel = out[out.index("Commands") :]
    listed = {
        line.strip("│ ").split()[0] for line in panel.splitlines()[1:] if line.startswith("│ ") and line[2] != " "
    }
    assert listed == {
        "macs",
        "search",
        "queue",
        "pareto",
        "report",
        "nas",
        "predict",
        "score",
        "preset",
        "fetch-fashion-mnist",
    }


def test_score_command_prints_the_worked_example():
    r = runner.invoke(app, ["score", "--macs", "1083210", "--f1", "0.6002"])
    assert r.exit_code == 0 and r.output.strip().splitlines()[-1] == "0.3606"


def _checkpoint(tmp_path):
    path = tmp_path / "m.pt"
    meta = {
        "arch": "pytorchcv:shufflenet_g3_wd4",
        "arch_kwargs": {},
        "classes": ["a", "b"],
        "input_size": 16,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    save_checkpoint(path, build_model(meta["arch"], 2), meta)
    return path


def test_predict_writes_one_row_per_image(tmp_path):
    for i in range(3):
        write_image(tmp_path / "imgs" / "sub" / f"{i}.png", i, i)
    r = runner.invoke(
        app, ["predict", str(_checkpoint(tmp_path)), str(tmp_path / "imgs"), "--out", str(tmp_path / "p.csv")]
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [row["file"] for row in rows] == ["sub/0.png", "sub/1.png", "sub/2.png"]
    assert {row["prediction"] for row in rows} <= {"a", "b"} and all(0 < float(r["confidence"]) <= 1 for r in rows)
    # also the macs command on a checkpoint: its own input size
    r = runner.invoke(app, ["macs", str(tmp_path / "m.pt")])
    assert r.exit_code == 0 and int(r.output.strip().splitlines()[-1]) > 0


def test_predict_names_a_bad_image(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"nope")
    r = runner.invoke(
        app, ["predict", str(_checkpoint(tmp_path)), str(tmp_path / "imgs"), "--out", str(tmp_path / "p.csv")]
    )
    assert r.exit_code != 0 and "bad.jpg: not a readable image" in str(r.exception)


def test_fashion_mnist_from_idx_files_is_deterministic(tmp_path, monkeypatch):
    import gzip
    import struct

    import numpy as np

    from tinycls import fashion_mnist
    from tinycls.fashion_mnist import materialize, read_idx

    sizes = {"train": 40, "t10k": 20}  # the real files hold 60,000 and 10,000
    monkeypatch.setattr(
        fashion_mnist,
        "SPLITS",
        {k: (*v[:2], sizes["train" if k == "train" else "t10k"]) for k, v in fashion_mnist.SPLITS.items()},
    )

    src = tmp_path / "idx"
    src.mkdir()
    rng = np.random.default_rng(0)
    for stem, n in sizes.items():
        # the real IDX format, 1x1 px images
        imgs = rng.integers(0, 256, (n, 1, 1), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (src / f"{stem}-images-idx3-ubyte").write_bytes(struct.pack(">HBB3I", 0, 8, 3, n, 1, 1) + imgs.tobytes())
        with gzip.open(src / f"{stem}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">HBBI", 0, 8, 1, n) + labels.tobytes())
    assert read_idx(src / "train-labels-idx1-ubyte.gz").shape == (40,)
    assert materialize(tmp_path / "a", src) == 60
    assert materialize(tmp_path / "a", src) == 0  # idempotent
    b = tmp_path / "b" / "test" / "Bag" / "00008.png"
    materialize(tmp_path / "b", src)
    assert b.read_bytes() == (tmp_path / "a" / "test" / "Bag" / "00008.png").read_bytes()


def test_predict_streams_the_folder_in_chunks_and_writes_the_csv_only_when_done(tmp_path, monkeypatch):
    """A folder of any length costs one chunk of decoded images: here 2 of 16 px (chunk_bytes
    2 x 16 x 16 x 3), rows identical to one chunk; a bad image in the last chunk leaves no CSV."""
    import tinycls.data

    whole = tmp_path / "whole.csv"
    for i in range(5):
        write_image(tmp_path / "imgs" / f"{i}.png", i, i)
    ckpt = str(_checkpoint(tmp_path))
    assert runner.invoke(app, ["predict", ckpt, str(tmp_path / "imgs"), "--out", str(whole)]).exit_code == 0
    chunks, original = [], tinycls.data.folder_chunks

    def small(image_dir, size):
        for files, images in original(image_dir, size, chunk_bytes=2 * 16 * 16 * 3):
            chunks.append(len(images))
            yield files, images

    monkeypatch.setattr(tinycls.data, "folder_chunks", small)
    r = runner.invoke(app, ["predict", ckpt, str(tmp_path / "imgs"), "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 0 and r.output.strip() == f"5 predictions -> {tmp_path / 'p.csv'}"
    assert chunks == [2, 2, 1] and (tmp_path / "p.csv").read_text() == whole.read_text()
    inside = tmp_path / "imgs" / "p.csv"  # the CSV (and its temporary file) in the folder it predicts
    assert runner.invoke(app, ["predict", ckpt, str(tmp_path / "imgs"), "--out", str(inside)]).exit_code == 0
    assert inside.read_text() == whole.read_text()
    inside.unlink()
    (tmp_path / "imgs" / "4.png").write_bytes(b"not a png")
    r = runner.invoke(app, ["predict", ckpt, str(tmp_path / "imgs"), "--out", str(tmp_path / "q.csv")])
    assert r.exit_code != 0 and "4.png: not a readable image" in str(r.exception)
    assert not (tmp_path / "q.csv").exists() and not (tmp_path / ".q.csv.tmp").exists()
