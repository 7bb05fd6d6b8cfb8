"""Stage scripts on a tiny prepared dataset: each bad input fails with a clear message before
any training time is spent."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import make_cifar
from tinycls.checkpoint import save_checkpoint
from tinycls.models import build_model
from tinycls.onnx_runtime import read_metadata

ROOT = Path(__file__).resolve().parents[1]


def _set(path: Path, section: str, **values):
    params = yaml.safe_load(path.read_text())
    params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _teacher(classes, **extra):
    meta = {
        "arch": "pytorchcv:shufflenet_g3_wd4",
        "arch_kwargs": {},
        "classes": classes,
        "input_size": 16,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        **extra,
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

    _set(Path("params.yaml"), "teacher", arch="timm:mobilenetv3_small_050", pretrained=True, weights="weights/nope.pth")
    with pytest.raises(FileNotFoundError, match="weights/nope.pth: no such weights file"):
        teacher.main()
    assert not Path("artifacts/teacher").exists() and not Path("live/teacher").exists()


def test_teacher_fine_tunes_packaged_imagenet_weights(workdir):
    from stages import teacher

    _set(
        Path("params.yaml"),
        "teacher",
        arch="timm:efficientnet_lite0",
        pretrained=True,
        weights="package:efficientnet_lite0",
        max_per_class=4,
    )
    teacher.main()
    m = json.loads(Path("metrics/teacher.json").read_text())
    assert (m["weights_loaded"], m["weights_by"], m["train_images"], m["max_per_class"]) == (294, "order", 12, 4)
    assert torch.load("artifacts/teacher/model.pt", weights_only=True)["arch"] == "timm:efficientnet_lite0"


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (
            {"weights": "package:efficientnet_lite1"},
            r"efficientnet_lite1.*: tensor \d+ .* does not fit timm:efficientnet_lite0's",
        ),
        ({"arch": "timm:efficientnet_lite0", "pretrained": False}, "is set but pretrained is false"),
        ({"max_per_class": -1}, r"\[teacher\].max_per_class: -1 must be >= 0"),
    ],
)
def test_bad_teacher_weights_fail_before_training(workdir, values, error):
    from stages import teacher

    base = {"arch": "timm:efficientnet_lite0", "pretrained": True, "weights": "package:efficientnet_lite0"}
    _set(Path("params.yaml"), "teacher", **{**base, **values})
    with pytest.raises(ValueError, match=error):
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


def test_a_weak_teacher_does_not_pick_the_students_epochs(workdir):
    from stages import pseudo, student

    _teacher(["ant", "bee", "cat"], val_f1=0.3)
    pseudo.main()
    _set(Path("params.yaml"), "pseudo", min_teacher_f1=0.6)
    student.main()
    m = json.loads(Path("metrics/student.json").read_text())
    assert m["train_images"] == 21 and m["selection"].startswith("val (fallback from train_val")  # train only


@pytest.mark.parametrize(
    ("source", "phases"),
    [
        ("cifar10", ["cifar10"]),
        ("cifar100", ["cifar100"]),
        ("cifar10_to_100", ["cifar10", "cifar100"]),
        ("cifar100_to_10", ["cifar100", "cifar10"]),
    ],
)
def test_pretrain_on_every_cifar_source(workdir, monkeypatch, source, phases):
    from stages import pretrain

    root = make_cifar(workdir / "cifar", monkeypatch, per_class=2)
    _set(Path("params.yaml"), "pretrain", source=source, cifar_root=str(root), max_per_class=1)
    pretrain.main()
    m = json.loads(Path("metrics/pretrain.json").read_text())
    assert m["source"] == source and [p["dataset"] for p in m["phases"]] == phases
    assert [p["classes"] for p in m["phases"]] == [10 if n == "cifar10" else 100 for n in phases]
    if len(phases) == 2:  # the second phase starts from the first: body copied, head fresh
        assert m["phases"][1]["init_transferred"] > 0 and m["phases"][1]["init_skipped"] == 1
    ckpt = torch.load("artifacts/pretrain/model.pt", weights_only=True)
    assert ckpt["arch"] == "pytorchcv:shufflenet_g3_wd4" and len(ckpt["classes"]) == m["phases"][-1]["classes"]
    assert sorted(p.name for p in Path("artifacts/pretrain").iterdir()) == ["model.pt", "source.json"]


def test_student_starts_from_the_pretrained_digits_model(workdir):
    from stages import pretrain, student

    pretrain.main()  # params.yaml's own source: digits, offline
    assert json.loads(Path("metrics/pretrain.json").read_text())["phases"][0]["dataset"] == "digits"
    _set(Path("params.yaml"), "kd", mode="none")
    _set(Path("params.yaml"), "student", train_on="train")
    student.main()
    m = json.loads(Path("metrics/student.json").read_text())
    assert m["init"] == "artifacts/pretrain/model.pt" and m["init_transferred"] > 0 and m["init_skipped"] == 1


def test_pretrain_of_another_architecture_fails_unless_allowed(workdir):
    from stages import student

    save_checkpoint(
        Path("artifacts/pretrain/model.pt"),
        build_model("timm:mobilenetv3_small_050", 10),
        {"arch": "timm:mobilenetv3_small_050", "arch_kwargs": {}, "classes": list("0123456789")},
    )
    _set(Path("params.yaml"), "kd", mode="none")
    _set(Path("params.yaml"), "student", train_on="train")
    with pytest.raises(ValueError, match=r"pretrain/model.pt: pretrained timm:mobilenetv3_small_050, but this model"):
        student.main()
    assert not Path("artifacts/student/model.pt").exists()
    _set(Path("params.yaml"), "student", allow_unmatched_init=True)
    student.main()
    assert json.loads(Path("metrics/student.json").read_text())["init_transferred"] == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"source": "imagenet"}, "[pretrain].source: 'imagenet' is not one of none, cifar10, cifar100, cifar10_to_100"),
        ({"cifar_root": "data/cifar"}, "[pretrain].cifar_root: 'data/cifar' is inside data/"),
        ({"source": "cifar10", "cifar_root": "nowhere"}, "cifar10: nowhere/cifar-10-batches-py does not exist"),
    ],
)
def test_pretrain_bad_inputs_fail_before_training(workdir, values, message):
    from stages import pretrain

    _set(Path("params.yaml"), "pretrain", **values)
    with pytest.raises((ValueError, RuntimeError)) as e:
        pretrain.main()
    assert message in str(e.value)
    assert not Path("live/pretrain").exists() and not Path("artifacts/pretrain/model.pt").exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "truelabel"}, "params.yaml [kd].mode: 'truelabel' is not one of none, vanilla, true_label."),
        ({"temperature": 0.0}, "params.yaml [kd].temperature: 0.0 must be > 0."),
        ({"alpha": 1.5}, "params.yaml [kd].alpha: 1.5 must be in [0, 1]."),
        ({"teachers": ["teacher", "oracle"]}, "[kd].teachers: 'oracle' is not one of teacher, assistant, student."),
        ({"weights": [1.0, 2.0]}, "[kd].weights: [1.0, 2.0] must be empty (equal) or give one weight per teacher"),
    ],
)
def test_kd_bad_settings(workdir, values, message):
    from stages import student

    _set(Path("params.yaml"), "kd", **values)
    with pytest.raises(ValueError) as e:
        student.main()
    assert message in str(e.value)


def test_kd_teacher_of_other_classes_is_refused(workdir):
    from stages import pseudo, student

    _teacher(["ant", "bee", "cat"])
    pseudo.main()
    _teacher(["ant", "bee", "dog"])
    _set(Path("params.yaml"), "kd", mode="true_label")
    with pytest.raises(ValueError, match=r"teacher/model.pt: teacher classes \['ant', 'bee', 'dog'\] differ"):
        student.main()
    assert not Path("artifacts/student/model.pt").exists()


def test_assistant_trains_only_when_listed_and_the_student_learns_from_both(workdir):
    from stages import assistant, pseudo, student

    _teacher(["ant", "bee", "cat"])
    pseudo.main()
    assistant.main()
    assert json.loads(Path("metrics/assistant.json").read_text()) == {"trained": False}
    assert not Path("artifacts/assistant/model.pt").exists()
    _set(Path("params.yaml"), "kd", teachers=["teacher", "assistant"], weights=[2.0, 1.0], mode="vanilla")
    assistant.main()
    m = json.loads(Path("metrics/assistant.json").read_text())
    assert m["trained"] and m["kd_mode"] == "vanilla" and m["kd_teachers"] == "teacher"
    student.main()
    assert json.loads(Path("metrics/student.json").read_text())["kd_teachers"] == "teacher+assistant"
    _set(Path("params.yaml"), "assistant", kd={"mode": "vanilla", "teachers": ["assistant"]})
    with pytest.raises(ValueError, match=r"\[assistant\].kd.teachers: \['assistant'\]: the assistant learns from"):
        assistant.main()


def test_pretrain_source_none_trains_nothing_and_the_student_starts_fresh(workdir):
    from stages import pretrain, student

    _set(Path("params.yaml"), "pretrain", source="none")
    pretrain.main()
    assert sorted(p.name for p in Path("artifacts/pretrain").iterdir()) == ["source.json"]
    assert json.loads(Path("live/pretrain/metrics.json").read_text())["trained"] is False
    _set(Path("params.yaml"), "kd", mode="none")
    _set(Path("params.yaml"), "student", train_on="train")
    student.main()
    assert "init" not in json.loads(Path("metrics/student.json").read_text())


def test_imagenet_weights_and_a_pretrain_checkpoint_conflict(workdir):
    from stages import pretrain, student

    pretrain.main()
    _set(Path("params.yaml"), "student", pretrained=True)
    with pytest.raises(ValueError, match=r"\[student\].pretrained: true, and artifacts/pretrain/model.pt exists"):
        student.main()


def _student(arch: str = "pytorchcv:shufflenet_g3_wd4"):
    meta = {
        "arch": arch,
        "arch_kwargs": {},
        "classes": ["ant", "bee", "cat"],
        "input_size": 16,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "stage": "student",
    }
    torch.manual_seed(0)
    save_checkpoint(Path("artifacts/student/model.pt"), build_model(arch, 3), meta)
    _set(Path("params.yaml"), "student", train_on="train", arch=arch)
    _set(Path("params.yaml"), "kd", mode="none")


def test_compress_layer_pruning_and_group_split_fine_tune_and_rebuild(workdir):
    from stages import compress
    from tinycls.checkpoint import load_checkpoint
    from tinycls.macs import count_macs

    _student()
    _set(Path("params.yaml"), "compress", keep_blocks=[2, 5, 2], split_groups=2, epochs=1)
    compress.main()
    m = json.loads(Path("metrics/compress.json").read_text())
    assert m["compressed"] and m["keep_blocks"] == [[0, 1], [0, 1, 2, 3, 4], [0, 1]] and m["split_convs"] > 0
    assert m["macs"] < m["macs_before"] and m["params"] < m["params_before"] and m["epochs"] == 1
    assert {"f1_before", "f1_compressed", "val_f1"} <= set(m)
    assert m["bn_images"] == m["train_images"] < 2048  # all of them
    model, meta = load_checkpoint(Path("artifacts/compress/model.pt"))
    assert meta["stage"] == "compress" and meta["compression"].startswith("blocks [2, 5, 2], ")
    assert count_macs(model, 16)[0] == m["macs"]
    # a training run's curves: the files (and headers) an untrained run writes empty (stages.curves)
    from stages.curves import CURVES

    tsv = {str(f.relative_to("live/compress/plots/metrics")): f for f in Path("live/compress").rglob("*.tsv")}
    assert sorted(tsv) == sorted(CURVES)
    assert all(tsv[name].read_text().splitlines()[0] == f"step\t{column}" for name, column in CURVES.items())


def test_the_uncompressed_student_teaches_its_compressed_copy(workdir):
    from stages import compress

    _student()
    _set(Path("params.yaml"), "kd", mode="true_label")
    _set(Path("params.yaml"), "compress", keep_blocks=[2, 5, 2], epochs=1, kd_teachers=["student"])
    compress.main()
    m = json.loads(Path("metrics/compress.json").read_text())
    assert m["kd_mode"] == "true_label" and m["kd_teachers"] == "student"
    for teachers, message in [
        (["oracle"], "'oracle' is not one of teacher, assistant, student"),
        (["assistant"], "the assistant is trained only when kd.teachers lists it"),
    ]:
        _set(Path("params.yaml"), "compress", kd_teachers=teachers)
        with pytest.raises(ValueError, match=message):
            compress.main()


def test_the_student_cannot_teach_itself(workdir):
    from stages import student

    _set(Path("params.yaml"), "kd", mode="true_label", teachers=["student"])
    with pytest.raises(ValueError, match=r"\[kd\].teachers: \['student'\]: the student cannot teach itself"):
        student.main()


def test_compress_off_passes_the_student_through(workdir):
    from stages import compress

    _student()
    _set(Path("params.yaml"), "compress", keep_blocks=[], split_groups=1, channel_ratio=0.0, target_macs=0)
    compress.main()
    assert Path("artifacts/compress/model.pt").read_bytes() == Path("artifacts/student/model.pt").read_bytes()
    assert json.loads(Path("metrics/compress.json").read_text())["compressed"] is False
    assert json.loads(Path("live/compress/metrics.json").read_text())["compressed"] is False
    assert sorted(str(f.relative_to("live/compress/plots/metrics")) for f in Path("live/compress").rglob("*.tsv")) == [
        "lr.tsv",
        "train/loss.tsv",
        "val/f1.tsv",
        "val/loss.tsv",
    ]  # the files a training run writes, each with its header alone


def test_compress_channel_pruning_to_a_macs_target(workdir):
    from stages import compress

    _student("pytorchcv:fdmobilenet_wd4")
    _set(Path("params.yaml"), "compress", keep_blocks=[], target_macs=40_000, epochs=0)
    compress.main()
    m = json.loads(Path("metrics/compress.json").read_text())
    assert m["macs"] <= 40_000 < m["macs_before"] and 0 < m["channel_ratio"] < 0.9
    assert m["val_f1"] == m["f1_compressed"]
    # no fine-tuning: curves with a header and no rows, so that `dvc plots` loads them
    assert Path("live/compress/plots/metrics/val/f1.tsv").read_text() == "step\tf1\n"
    assert json.loads(Path("live/compress/metrics.json").read_text()) == {"fine_tuned": False}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"keep_blocks": [2, 5]}, r"keep_blocks \[2, 5\]: 2 entries, but pytorchcv:shufflenet_g3_wd4 has 3 stages"),
        ({"keep_blocks": [2, 0, 2]}, "stage 2 has 8 blocks; keep between 1"),
        ({"keep_blocks": "2,5,2"}, r"keep_blocks: '2,5,2' is not a list"),
        ({"channel_ratio": 1.0}, r"\[compress\].channel_ratio: 1.0 must be in \[0, 1\)"),
        ({"channel_ratio": 0.3}, "channel pruning of pytorchcv:shufflenet_g3_wd4: it shuffles channels"),
        ({"target_macs": 10}, "channel pruning of pytorchcv:shufflenet_g3_wd4: it shuffles channels"),
        ({"split_groups": 0}, r"split_groups: 0 must be >= 1"),
        ({"split_groups": 7}, "split_groups 7: pytorchcv:shufflenet_g3_wd4 has no grouped conv"),
        ({"block_selection": "random"}, "block_selection: 'random' is not one of first, weight_std"),
        ({"bn_images": -1}, r"bn_images: -1 must be >= 0"),
        ({"kd_teachers": ["student"]}, r"\[compress\].kd_teachers: \['student'\] teach nothing with kd.mode none"),
        ({"kd_teachers": "student"}, r"kd_teachers: 'student' is not a list"),
    ],
)
def test_compress_bad_settings_fail_before_fine_tuning(workdir, values, message):
    from stages import compress

    _student()
    _set(Path("params.yaml"), "compress", **values)
    with pytest.raises(ValueError, match=message):
        compress.main()
    assert not Path("live/compress").exists() and not Path("artifacts/compress/model.pt").exists()


def test_compress_target_below_reach(workdir):
    from stages import compress

    _student("pytorchcv:fdmobilenet_wd4")
    _set(Path("params.yaml"), "compress", keep_blocks=[], target_macs=100)
    with pytest.raises(ValueError, match=r"target_macs 100: below what channel pruning reaches on pytorchcv:fdmob"):
        compress.main()


def test_predict_preprocesses_exactly_as_the_pipeline(workdir):
    """tinycls predict on the raw files gives the logits the pipeline gives on its cache: square
    pad and resize to the cache side (16 here, recorded in the checkpoint), then to the model's
    input size (24)."""
    from typer.testing import CliRunner

    from stages import teacher
    from tinycls.cache import load_held_out, load_split
    from tinycls.checkpoint import load_checkpoint
    from tinycls.cli import app
    from tinycls.predict import predict_checkpoint

    _set(Path("params.yaml"), "teacher", input_size=24)
    teacher.main()
    model, meta = load_checkpoint(Path("artifacts/teacher/model.pt"))
    assert (meta["cache_size"], meta["input_size"]) == (16, 24)
    images, _ = load_split(Path("artifacts/prepare"), "test")
    conf = predict_checkpoint(model, meta, images, torch.device("cpu")).softmax(1).max(1).values.tolist()
    files, _ = load_held_out(Path("artifacts/held_out/test.json"))
    pipeline = {f.removeprefix("test/"): c for f, c in zip(files, conf, strict=True)}

    def predict(checkpoint: str) -> dict[str, float]:
        r = CliRunner().invoke(app, ["predict", checkpoint, "data/tiny/test", "--out", "p.csv"])
        assert r.exit_code == 0, r.output
        return {row.split(",")[0]: float(row.split(",")[2]) for row in Path("p.csv").read_text().splitlines()[1:]}

    rows = predict("artifacts/teacher/model.pt")
    assert rows.keys() == pipeline.keys() and len(rows) == 9
    assert all(abs(rows[f] - pipeline[f]) < 1e-5 for f in rows)
    # decoding straight to the model's size (what predict did before cache_size) is another input
    save_checkpoint(Path("straight.pt"), model, {**meta, "cache_size": 24})
    other = predict("straight.pt")
    assert max(abs(other[f] - pipeline[f]) for f in rows) > 1e-4


STOP_AFTER_FIRST_EPOCH = """
import os, runpy, signal
import tinycls.resume as t
real = t.ResumeState.save
def save_then_terminate(self, *args, **kwargs):
    real(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a job scheduler would, once epoch 1 is saved
t.ResumeState.save = save_then_terminate
runpy.run_module("stages.teacher", run_name="__main__", alter_sys=True)  # as `python -m stages.teacher`
"""


def test_a_stage_stopped_by_sigterm_resumes_to_the_same_metrics(workdir):
    import os
    import subprocess
    import sys

    _set(Path("params.yaml"), "teacher", epochs=3)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}

    def stage(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *cmd], env=env, capture_output=True, text=True, timeout=300)

    r = stage("-m", "stages.teacher")
    assert r.returncode == 0, r.stderr
    whole = json.loads(Path("metrics/teacher.json").read_text())
    first = torch.load("artifacts/teacher/model.pt", weights_only=True)
    assert not Path("resume").exists()  # removed once the stage finished
    for out in ("artifacts/teacher", "live/teacher", "metrics/teacher.json"):
        shutil.rmtree(out) if Path(out).is_dir() else Path(out).unlink()

    r = stage("-c", STOP_AFTER_FIRST_EPOCH)
    assert r.returncode == 130 and "Interrupted. `dvc repro` continues training" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not Path("metrics/teacher.json").exists()
    assert torch.load("resume/teacher/model.pt", weights_only=True)["best"]["epochs_run"] == 1
    shutil.rmtree("artifacts/teacher")  # dvc repro removes the outputs before the rerun
    r = stage("-m", "stages.teacher")
    assert r.returncode == 0 and "resuming after epoch 1 of 3" in r.stdout, r.stdout + r.stderr
    assert json.loads(Path("metrics/teacher.json").read_text()) == whole
    again = torch.load("artifacts/teacher/model.pt", weights_only=True)
    assert again.keys() == first.keys() and again["epoch"] == first["epoch"]
    assert all(torch.equal(v, again["state_dict"][k]) for k, v in first["state_dict"].items())
    assert not Path("resume").exists()
    rows = Path("live/teacher/plots/metrics/val/f1.tsv").read_text().splitlines()
    assert len(rows) == 1 + 3  # the curve holds every epoch, the replayed ones too


def test_a_resume_state_saved_by_other_code_is_not_resumed(workdir):
    """Epochs trained by the code before a fix are not the epochs the fixed code would train: the
    rerun starts fresh, saying why, though params and data are the same."""
    import os
    import subprocess
    import sys

    _set(Path("params.yaml"), "teacher", epochs=2)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    r = subprocess.run([sys.executable, "-c", STOP_AFTER_FIRST_EPOCH], env=env, capture_output=True, text=True)
    assert r.returncode == 130 and Path("resume/teacher/model.pt").is_file(), r.stderr
    shutil.copytree(ROOT / "src", "fixed", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with open("fixed/tinycls/losses.py", "a") as f:
        f.write("\n# a fix\n")
    env["PYTHONPATH"] = f"{Path('fixed').resolve()}:{ROOT}"
    r = subprocess.run([sys.executable, "-m", "stages.teacher"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (
        "resume/teacher/model.pt: saved by a fit with other code (tinycls or the stage); starting from epoch 1"
        in r.stdout
    )
    assert "resuming" not in r.stdout and json.loads(Path("metrics/teacher.json").read_text())["epochs"] == 2


def _exported(**export):
    """The student as the final model, exported by the stage (few calibration images, short timing)."""
    from stages import export as stage

    _student()
    Path("artifacts/compress").mkdir(parents=True, exist_ok=True)
    shutil.copyfile("artifacts/student/model.pt", "artifacts/compress/model.pt")
    _set(Path("params.yaml"), "export", **{"latency_runs": 10, "latency_warmup": 1, "calibration_images": 4, **export})
    stage.main()
    return json.loads(Path("metrics/export.json").read_text())


def test_export_stage_writes_both_files_and_score_scores_them(workdir):
    from stages import pseudo, score

    m = _exported()
    fp32, int8 = Path("artifacts/export/model.onnx"), Path("artifacts/export/model.int8.onnx")
    assert m["parity_argmax_mismatches"] == 0 and m["parity_max_abs_diff"] < 1e-3 and m["parity_images"] == 9
    assert m["calibration_images"] == 4 and m["fp32"]["bytes"] == fp32.stat().st_size
    assert m["int8"]["bytes"] == int8.stat().st_size and m["int8_method"] == "qat"  # the default
    assert "quantization-aware" in read_metadata(int8)["quantization"] and 0 <= m["int8_agreement"] <= 1
    for cost in (m["fp32"], m["int8"]):
        assert 0 < cost["latency_ms_p50"] <= cost["latency_ms_p90"] and cost["latency_ms_p50_all_threads"] > 0
    _teacher(["ant", "bee", "cat"])
    pseudo.main()
    score.main()
    s = json.loads(Path("metrics/score.json").read_text())
    assert s["onnx_f1"] == pytest.approx(s["f1"], abs=1e-9)  # the same model through ONNX Runtime
    assert 0 <= s["int8_f1"] <= 1 and s["int8_f1_drop"] == pytest.approx(s["onnx_f1"] - s["int8_f1"])
    assert s["int8_f1_drop_too_large"] == (s["int8_f1_drop"] > 0.01)
    assert (s["onnx_bytes"], s["latency_ms"]) == (m["fp32"]["bytes"], m["fp32"]["latency_ms_p50"])


def test_export_parity_beyond_tolerance_fails_and_keeps_the_last_export(workdir):
    from stages import export

    _exported()
    before = Path("artifacts/export/model.onnx").read_bytes()
    _set(Path("params.yaml"), "export", parity_tolerance=1e-12)
    with pytest.raises(ValueError, match=r"differs from PyTorch on the 9 test images: max \|logit difference\| "):
        export.main()
    assert Path("artifacts/export/model.onnx").read_bytes() == before


def test_predict_on_the_onnx_files_agrees_with_the_checkpoint(workdir):
    from typer.testing import CliRunner

    from tinycls.cli import app

    _exported()

    def predict(model: str) -> list[list[str]]:
        r = CliRunner().invoke(app, ["predict", model, "data/tiny/test", "--out", "p.csv"])
        assert r.exit_code == 0, r.output
        return [row.split(",") for row in Path("p.csv").read_text().splitlines()]

    pt, fp32, int8 = (
        predict(f"artifacts/{m}") for m in ("compress/model.pt", "export/model.onnx", "export/model.int8.onnx")
    )
    assert fp32[0] == pt[0] == ["file", "prediction", "confidence"] and len(pt) == 10
    assert [r[:2] for r in fp32] == [r[:2] for r in pt]
    assert all(abs(float(a[2]) - float(b[2])) < 1e-5 for a, b in zip(fp32[1:], pt[1:], strict=True))
    assert [r[0] for r in int8] == [r[0] for r in pt]
    proto = __import__("onnx").load("artifacts/export/model.onnx")
    del proto.metadata_props[:]
    Path("bare.onnx").write_bytes(proto.SerializeToString())
    tinycls = str(Path(sys.executable).parent / "tinycls")  # the entry point: message alone, exit 2
    cmd = [tinycls, "predict", "bare.onnx", "data/tiny/test", "--out", "p.csv"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("Error: bare.onnx: an ONNX model without tinycls metadata")


def test_a_spec_network_runs_through_pretrain_student_compress_export_and_score(workdir):
    from stages import compress, export, pretrain, pseudo, score, student
    from tinycls.checkpoint import load_checkpoint
    from tinycls.specnet import load_spec

    shutil.copy(ROOT / "specs" / "example.yaml", "net.yaml")
    _set(Path("params.yaml"), "student", arch="nas:net.yaml", train_on="train")
    _set(Path("params.yaml"), "kd", mode="none")
    _set(Path("params.yaml"), "export", latency_runs=10, latency_warmup=1, calibration_images=4)
    pretrain.main()  # pretrains student.arch: the spec network, on digits
    assert torch.load("artifacts/pretrain/model.pt", weights_only=True)["arch"] == "nas:net.yaml"
    student.main()
    assert json.loads(Path("metrics/student.json").read_text())["init_transferred"] > 0
    compress.main()  # compression off: passes through
    model, meta = load_checkpoint(Path("artifacts/compress/model.pt"))
    assert meta["arch"] == "nas:net.yaml" and meta["arch_kwargs"]["spec"] == load_spec("net.yaml")
    export.main()
    assert json.loads(Path("metrics/export.json").read_text())["int8_method"] == "qat"  # a spec net traces
    _teacher(["ant", "bee", "cat"])
    pseudo.main()
    score.main()
    s = json.loads(Path("metrics/score.json").read_text())
    assert s["macs"] > 0 and s["onnx_f1"] == pytest.approx(s["f1"], abs=1e-9)


def test_a_bad_spec_stops_the_check_stage_with_its_line(workdir):
    from stages import check

    Path("net.yaml").write_text("backbone:\n  - [1, Conv, [16, 3, 2]]\n  - [1, Fancy, []]\n")
    _set(Path("params.yaml"), "student", arch="nas:net.yaml")
    with pytest.raises(ValueError, match=r"nas:net\.yaml, line 3: unknown module 'Fancy'"):
        check.main()
    Path("net.yaml").write_text("backbone:\n" + "  - [1, Conv, [16, 3, 2]]\n" * 5)
    with pytest.raises(ValueError, match=r"backbone item 5 \(Conv, stride 2\): the map is already 1x1 at 16 px"):
        check.main()


def test_a_student_over_its_macs_budget_stops_check_and_the_student_stage(workdir):
    from stages import check, student
    from tinycls.macs import count_macs

    macs = count_macs(build_model("pytorchcv:shufflenet_g3_wd4", 3), 16)[0]
    _set(Path("params.yaml"), "student", max_macs=macs)
    check.main()  # exactly on the budget: fits
    _set(Path("params.yaml"), "student", max_macs=macs - 1)
    budget = rf"counts {macs:,} MACs at 16 px, over the budget max_macs {macs - 1:,}\. Pick a smaller one"
    with pytest.raises(ValueError, match=r"params.yaml \[student\]: the network " + budget):
        check.main()
    _teacher(["ant", "bee", "cat"])
    _set(Path("params.yaml"), "student", train_on="train")
    _set(Path("params.yaml"), "kd", mode="none")
    with pytest.raises(ValueError, match="student pytorchcv:shufflenet_g3_wd4: the network " + budget):
        student.main()  # before any epoch
    assert not Path("artifacts/student/model.pt").exists()
    _set(Path("params.yaml"), "student", max_macs=-1)
    with pytest.raises(ValueError, match=r"max_macs: -1 must be a whole number >= 0 \(0 = no budget\)"):
        check.main()


def test_a_cache_whose_labels_and_images_disagree_stops_a_stage_naming_the_file(workdir):
    import os
    import subprocess
    import sys

    labels = Path("artifacts/prepare/train_labels.npy")
    np.save(labels, np.load(labels)[:-1])  # one label short: rows would pair with the wrong labels
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    r = subprocess.run([sys.executable, "-m", "stages.teacher"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"{labels}: (20,) labels for 21 images in train_images.npy" in r.stderr and "dvc checkout" in r.stderr
