"""Bad params, data and files end a stage, `dvc repro` or the CLI with the message alone and a
non-zero exit, before any work; bugs keep their traceback. Run through the real entry points."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.params import run
from tests.conftest import make_imagefolder, tree_digest
from tinycls.errors import InputError, MissingInput

ROOT = Path(__file__).resolve().parents[1]


def _run(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _params(tmp_path: Path, **sections: dict) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, values in sections.items():
        if name in params and values is not None:
            params[name].update(values)
        else:
            params[name] = values
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


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
        studnet={"epochs": 3},  # what a misspelt `dvc exp run -S studnet.epochs=3` adds
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


@pytest.mark.parametrize(
    ("damage", "messages"),
    [
        (_stray, ["stray.png: images must sit in a class folder", "Move it into its class folder"]),
        (_bomb, ["huge.png: too large to decode", "Downscale it, or delete it", "prepare.max_bad_fraction"]),
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
