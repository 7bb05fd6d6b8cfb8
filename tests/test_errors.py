"""Bad params, data and files end a stage, `dvc repro` or the CLI with the message alone and a
non-zero exit, before any work; bugs keep their traceback. Run through the real entry points."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.runner import run
from tests.conftest import make_imagefolder, tree_digest
from tinycls.errors import InputError, MissingInput

ROOT = Path(__file__).resolve().parents[1]


def _run(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _params(tmp_path: Path, **sections: dict) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(params.get(name), dict):
            params[name].update(values)
        else:
            params[name] = values
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if not (tmp_path / "specs").exists():  # the default student is a spec network, as in the repository
        shutil.copytree(ROOT / "specs", tmp_path / "specs")


def test_the_repositorys_params_pass_the_check(tmp_path):
    _params(tmp_path)
    r = _run(tmp_path, sys.executable, "-m", "stages.check")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "artifacts/check/checked.txt").read_text().startswith("params.yaml: every section checked")


def test_the_check_lists_every_bad_param_at_once_without_a_traceback(tmp_path):
    _params(
        tmp_path,
        prepare={"dataset": ".."},
        student={"epochs": -1},
        assistant={"device": "gpu"},
        teacher={"batch_size": 0},
        pseudo={"threshold": "high"},
        compress={"keep_blocks": "2,5,2"},
        score={"batch_size": 0.5},
        studnet={"epochs": 3},  # a typo; `dvc exp run -S +studnet.epochs=3` adds it too
    )
    r = _run(tmp_path, sys.executable, "-m", "stages.check")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    for expected in (
        "8 problem(s) in params.yaml; nothing was run",
        "unknown section [studnet]; the sections are prepare, pretrain,",
        "[prepare].dataset: '..' must be the name of one folder under data/",
        "[student].epochs: -1 must be >= 1",
        "[teacher].batch_size: 0 must be >= 1",
        "[assistant].device: 'gpu' is not one of auto, cpu, cuda",
        "[pseudo].threshold: 'high' is not a float",
        "[compress].keep_blocks: '2,5,2'",
        "[score].batch_size: 0.5 is not a int",
    ):
        assert expected in r.stderr, (expected, r.stderr)
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"student": {"device": "gpu"}}, "[student].device: 'gpu' is not one of auto, cpu, cuda"),
        ({"kd": {"mode": "soft"}}, "[kd].mode: 'soft' is not one of"),
        ({"kd": None}, "no [kd] section"),
        ({"student": 5}, "params.yaml [student]: 5 is not a section of `key: value` lines"),
        ({"student": {"pretrained": True}}, "student].pretrained: true, and pretrain.source: digits"),
        ({"teacher": {"weights": "/elsewhere/model.pth"}}, "a local weights file must sit in weights/"),
        ({"assistant": {"kd": {"temperature": 4.0}}}, "[assistant].kd: missing key(s) ['mode']"),
    ],
)
def test_the_check_names_section_key_value_and_choices(tmp_path, sections, message):
    _params(tmp_path, **sections)
    if sections.get("kd", 1) is None:
        params = yaml.safe_load((tmp_path / "params.yaml").read_text())
        del params["kd"]
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = _run(tmp_path, sys.executable, "-m", "stages.check")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def _stray(root: Path) -> None:
    (root / "train" / "stray.png").write_bytes((root / "train" / "ant" / "0.png").read_bytes())


def _bomb(root: Path) -> None:
    from tests.test_images import _png_header_only

    _png_header_only(root / "train" / "bee" / "huge.png", 60_000, 60_000)  # 3.6 GP, 40 bytes


def _link_out(root: Path) -> None:
    outside = root.parents[1] / "elsewhere.png"
    outside.write_bytes((root / "train" / "ant" / "0.png").read_bytes())
    (root / "train" / "ant" / "link.png").symlink_to(outside)


def _latin1_name(root: Path) -> None:
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes, as an old camera or archive writes them
    (root / "train" / "bee" / name).write_bytes((root / "train" / "bee" / "0.png").read_bytes() + b"x")


def _case_only_test_folder(root: Path) -> None:
    (root / "test" / "ant").rename(root / "test" / "Ant")


def _one_image_two_classes(root: Path) -> None:
    (root / "train" / "bee" / "dup.png").write_bytes((root / "train" / "ant" / "0.png").read_bytes())


@pytest.mark.parametrize(
    ("damage", "messages"),
    [
        (_stray, ["stray.png: images must sit in a class folder", "Move it into its class folder"]),
        (_bomb, ["huge.png: too large to decode", "Downscale it, or delete it", "prepare.max_bad_fraction"]),
        (_link_out, ["1 symlink(s) under data/tiny lead outside it", "ant/link.png -> ", "Fix: copy those files"]),
        (_latin1_name, ["1 name(s) under data/tiny are not valid UTF-8", "bee/caf\\xe9.png", "convmv -f latin1"]),
        (_case_only_test_folder, ["folders 'Ant' (train: 'ant') match train classes only up to case", "Rename"]),
        (_one_image_two_classes, ["1 image(s) are labelled with two classes", "bee/dup.png (bee) == ", "0.png (ant)"]),
    ],
)
def test_a_stage_on_bad_data_prints_the_message_alone_and_leaves_data_alone(tmp_path, damage, messages):
    _params(tmp_path, prepare={"dataset": "tiny", "workers": 1})
    root = make_imagefolder(tmp_path / "data" / "tiny")
    damage(root)
    before = tree_digest(root)
    r = _run(tmp_path, sys.executable, "-m", "stages.prepare")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("Error: ") and all(m in r.stderr for m in messages), r.stderr
    assert tree_digest(root) == before and not (tmp_path / "artifacts").exists()


def test_labelled_twice_drop_leaves_every_copy_out_and_counts_them(tmp_path):
    """The way on past an image in two class folders without editing the data: both copies are
    left out of every split (counted, not as bad files), the rest is prepared as usual."""
    _params(tmp_path, prepare={"dataset": "tiny", "workers": 1, "labelled_twice": "drop"})
    root = make_imagefolder(tmp_path / "data" / "tiny")
    _one_image_two_classes(root)
    before = tree_digest(root)
    r = _run(tmp_path, sys.executable, "-m", "stages.prepare")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "metrics" / "prepare.json").read_text())
    assert metrics["labelled_twice_dropped"] == 2 and metrics["bad_files_skipped"] == 0
    assert metrics["images"]["train"] + metrics["images"]["val"] == 3 * 8 - 1  # 24 files, ant/0.png and its copy out
    assert tree_digest(root) == before
    _params(tmp_path, prepare={"dataset": "tiny", "workers": 1, "labelled_twice": "keep"})
    r = _run(tmp_path, sys.executable, "-m", "stages.check")
    assert r.returncode == 2 and "[prepare].labelled_twice: 'keep' is not one of stop, drop" in r.stderr, r.stderr


def test_the_cli_prints_the_message_alone(tmp_path):
    tinycls = str(Path(sys.executable).parent / "tinycls")
    r = _run(tmp_path, tinycls, "predict", str(tmp_path / "none.pt"), str(tmp_path), "--out", "p.csv")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "none.pt: no such checkpoint; train one with `dvc repro` first." in r.stderr
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"nope")
    r = _run(tmp_path, sys.executable, "-m", "tinycls.cli", "score", "--macs", "100", "--f1", "1.5")
    assert r.returncode == 2 and "f1=1.5: expected a value in [0, 1]" in r.stderr and "Traceback" not in r.stderr


def test_a_bug_keeps_its_traceback():
    def bug() -> None:
        raise KeyError("a real bug")

    with pytest.raises(KeyError):
        run(bug)
    with pytest.raises(SystemExit) as e:
        run(lambda: (_ for _ in ()).throw(MissingInput("x: missing")))
    assert e.value.code == 2 and issubclass(MissingInput, FileNotFoundError) and issubclass(InputError, ValueError)
