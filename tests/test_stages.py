"""Stage scripts on a tiny prepared dataset: each bad input fails with a clear message before
any training time is spent."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import make_imagefolder
from tinycls.models import build_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"].update(dataset="tiny", image_size=16, max_per_class=0, workers=1)
    for name in ("teacher", "student"):
        params[name].update(arch="pytorchcv:shufflenet_g3_wd4", epochs=1, batch_size=8, input_size=16)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_imagefolder(tmp_path / "data" / "tiny")
    monkeypatch.chdir(tmp_path)
    from stages import prepare

    prepare.main()
    return tmp_path


def _set(path: Path, section: str, **values):
    params = yaml.safe_load(path.read_text())
    params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _teacher(classes):
    meta = {
        "arch": "pytorchcv:shufflenet_g3_wd4",
        "arch_kwargs": {},
        "classes": classes,
        "input_size": 16,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    save_checkpoint(Path("artifacts/teacher/model.pt"), build_model(meta["arch"], len(classes)), meta)


def test_pseudo_stage_writes_table_and_label_free_metrics(workdir):
    from stages import pseudo

    _teacher(["ant", "bee", "cat"])
    pseudo.main()
    metrics = json.loads(Path("metrics/pseudo.json").read_text())
    assert metrics["images"] == 9 and 0 <= metrics["coverage"] <= 1 and "accuracy" not in json.dumps(metrics)
    header = Path("artifacts/pseudo/pseudo_labels.csv").read_text().splitlines()[0]
    assert header == "index,prediction,confidence,p_ant,p_bee,p_cat"


def test_pseudo_stage_bad_inputs(workdir):
    from stages import pseudo

    with pytest.raises(FileNotFoundError, match="artifacts/teacher/model.pt: no such checkpoint"):
        pseudo.main()
    Path("artifacts/teacher").mkdir(parents=True)
    Path("artifacts/teacher/model.pt").write_bytes(b"\x00corrupt")
    with pytest.raises(ValueError, match="model.pt: not a readable checkpoint"):
        pseudo.main()
    _teacher(["ant", "bee", "dog"])
    with pytest.raises(ValueError, match=r"classes \['ant', 'bee', 'dog'\] differ from the data's"):
        pseudo.main()
    _teacher(["ant", "bee", "cat"])
    np.save("artifacts/prepare/test_images.npy", np.zeros((0, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="the test split is empty"):
        pseudo.main()


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_threshold_outside_0_1(workdir, threshold):
    from stages import pseudo

    _set(Path("params.yaml"), "pseudo", threshold=threshold)
    with pytest.raises(ValueError, match=rf"params.yaml \[pseudo\].threshold: {threshold} must be in \[0, 1\]"):
        pseudo.main()


def test_teacher_without_weights_fails_before_training(workdir):
    from stages import teacher

    _set(Path("params.yaml"), "teacher", arch="timm:mobilenetv3_small_050", pretrained=True, weights="nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth: no such weights file"):
        teacher.main()
    assert not Path("artifacts/teacher").exists() and not Path("live/teacher").exists()


def test_student_train_on_is_checked(workdir):
    from stages import student

    _set(Path("params.yaml"), "student", train_on="everything")
    with pytest.raises(ValueError, match=r"\[student\].train_on: 'everything' is not one of train, train_val"):
        student.main()


def test_student_trains_on_all_data_with_the_proxy(workdir):
    from stages import pseudo, student

    _teacher(["ant", "bee", "cat"])
    pseudo.main()
    _set(Path("params.yaml"), "student", train_on="train_val_and_pseudo_labelled_test")
    _set(Path("params.yaml"), "pseudo", threshold=0.0, labels="soft")
    student.main()
    m = json.loads(Path("metrics/student.json").read_text())
    assert m["train_images"] == 18 + 6 + 9 and m["selection"].startswith("proxy")
    shutil.rmtree("artifacts/student")
