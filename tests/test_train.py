import numpy as np
import pytest
import torch

from tests.conftest import class_arrays
from tinycls.checkpoint import load_checkpoint
from tinycls.config import from_section
from tinycls.models import build_model
from tinycls.train import TrainConfig, fit, seed_everything

ARCH = "pytorchcv:shufflenet_g3_wd4"


META = {
    "arch": ARCH,
    "arch_kwargs": {},
    "classes": ["r", "g", "b"],
    "input_size": 16,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
}


def _fit(tmp_path, epochs=1, **kw):
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=1.0e-2, device="cpu", **kw)
    seed_everything(cfg.seed)
    model = build_model(ARCH, 3)
    rows = []
    train, val = class_arrays(48, 0), class_arrays(24, 1)
    result = fit(model, train, val, cfg, tmp_path / "best.pt", META, log=rows.append, progress=False)
    return model, result, rows


def test_fit_logs_every_epoch_and_saves_the_best(tmp_path):
    _, result, rows = _fit(tmp_path, epochs=2)
    assert [set(r) for r in rows] == [{"train/loss", "val/loss", "val/f1", "lr"}] * 2
    assert result.best_f1 == max(r["val/f1"] for r in rows) and result.epochs_run == 2
    model, meta = load_checkpoint(tmp_path / "best.pt")
    assert meta["epoch"] == result.best_epoch and meta["val_f1"] == result.best_f1


@pytest.mark.parametrize("opt_sched", [("adamw", "onecycle"), ("sgd", "cosine")])
def test_same_seed_same_result(tmp_path, opt_sched):
    opt, sched = opt_sched
    a, ra, rows_a = _fit(tmp_path / "a", optimizer=opt, schedule=sched)
    b, rb, rows_b = _fit(tmp_path / "b", optimizer=opt, schedule=sched)
    assert rows_a == rows_b
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    _, _, rows_c = _fit(tmp_path / "c", optimizer=opt, schedule=sched, seed=1)
    assert rows_c != rows_a


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_weights_layout_is_a_setting_and_checkpoints_load_either_way(tmp_path, channels_last):
    model, result, _ = _fit(tmp_path, channels_last=channels_last)
    convs = [p for p in model.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert convs and all(p.is_contiguous(memory_format=fmt) for p in convs)
    loaded, meta = load_checkpoint(tmp_path / "best.pt")  # a plain NCHW model, whatever the training layout
    assert all(p.is_contiguous() for p in loaded.parameters()) and meta["val_f1"] == result.best_f1


def test_ctrl_c_leaves_a_usable_checkpoint(tmp_path):
    calls = {"n": 0}

    def interrupting(logits, y, x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return torch.nn.functional.cross_entropy(logits, y)

    cfg = TrainConfig(epochs=1, batch_size=16, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        fit(
            build_model(ARCH, 3),
            class_arrays(48, 0),
            class_arrays(24, 1),
            cfg,
            tmp_path / "best.pt",
            META,
            criterion=interrupting,
            progress=False,
        )
    for name in ("best.pt", "best.last.pt"):
        model, meta = load_checkpoint(tmp_path / name)
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 3)


@pytest.mark.parametrize(
    "settings",
    [
        {"optimizer": "adamw", "schedule": "onecycle", "hflip": True, "translate": 0.1},
        # CutMix draws from numpy's global RNG, EMA keeps its own weights, SGD its momentum
        {"optimizer": "sgd", "schedule": "cosine", "cutmix_prob": 1.0, "ema_decay": 0.9},
    ],
)
def test_an_interrupted_fit_resumes_to_the_same_result(tmp_path, settings):
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1.0e-2, device="cpu", **settings)
    train, val = class_arrays(48, 0), class_arrays(24, 1)
    steps = {"n": 0, "stop_at": None}

    def loss(logits, y, x):  # cross-entropy (soft CutMix targets too); Ctrl-C at step stop_at
        steps["n"] += 1
        if steps["n"] == steps["stop_at"]:
            raise KeyboardInterrupt
        return torch.nn.functional.cross_entropy(logits, y)

    def run(out, resume, stop_at=None):
        steps.update(n=0, stop_at=stop_at)
        seed_everything(cfg.seed)
        rows = []
        r = fit(build_model(ARCH, 3), train, val, cfg, out / "best.pt", META, log=rows.append,
                progress=False, resume=resume, criterion=loss)  # fmt: skip
        return r, rows

    whole, whole_rows = run(tmp_path / "whole", tmp_path / "whole.resume")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", tmp_path / "cut.resume", stop_at=7)  # 3 steps an epoch: in epoch 3
    assert torch.load(tmp_path / "cut.resume", weights_only=True)["best"]["epochs_run"] == 2
    assert (tmp_path / "cut" / "best.last.pt").is_file()  # Ctrl-C's weights
    (tmp_path / "cut" / "best.pt").unlink()  # as dvc repro removes a stage's outputs
    resumed, rows = run(tmp_path / "cut", tmp_path / "cut.resume")
    assert not (tmp_path / "cut" / "best.last.pt").exists()  # superseded by the finished run
    assert resumed == whole and rows == whole_rows  # the first two rows replayed, the third trained
    assert steps["n"] == 3  # one epoch trained
    for name in ("whole", "cut"):
        assert load_checkpoint(tmp_path / name / "best.pt")[1]["epoch"] == whole.best_epoch
    a, b = (load_checkpoint(tmp_path / n / "best.pt")[0].state_dict().values() for n in ("whole", "cut"))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_resume_state_of_another_fit_is_ignored(tmp_path, capsys):
    _fit(tmp_path / "a", epochs=1)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1.0e-2, device="cpu")
    seed_everything(0)
    path = tmp_path / "state.pt"
    fit(build_model(ARCH, 3), class_arrays(48, 0), class_arrays(24, 1), cfg, tmp_path / "x.pt", META,
        progress=False, resume=path)  # fmt: skip
    other = TrainConfig(epochs=1, batch_size=16, lr=2.0e-2, device="cpu")
    seed_everything(0)
    r = fit(build_model(ARCH, 3), class_arrays(48, 0), class_arrays(24, 1), other, tmp_path / "y.pt", META,
            progress=False, resume=path)  # fmt: skip
    assert (
        "saved by a fit with other settings, data, initial weights or teachers; starting from epoch 1"
        in capsys.readouterr().out
    )
    assert r.epochs_run == 1


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"epochs": 1, "batch_size": 8, "optimizer": "adam"}, "[student].optimizer: 'adam' is not one of adamw, sgd."),
        ({"epochs": 1, "batch_size": 8, "lr": "5e-4"}, "[student].lr: '5e-4' is not a float (write floats with a dot"),
        ({"epochs": 0, "batch_size": 8}, "[student].epochs: 0 must be >= 1."),
        ({"epochs": 1, "batch_size": 8, "lrate": 0.1}, "[student]: unknown key(s) ['lrate']"),
        ({"batch_size": 8}, "[student]: missing key(s) ['epochs']"),
        ({"epochs": 1, "batch_size": 8, "schedule": "step"}, "schedule: 'step' is not one of cosine, onecycle."),
        ({"epochs": 1, "batch_size": 8, "zoom": 0.0}, "zoom: 0.0 must be in (0, 1] (1 = no zoom)."),
        ({"epochs": 1, "batch_size": 8, "mix": 1.5}, "mix: 1.5 must be in [0, 1] (0 = no mixup)."),
        ({"epochs": 1, "batch_size": 8, "mix": 0.5, "cutmix_prob": 0.5}, "pick one way of mixing"),
    ],
)
def test_config_errors_name_the_value_and_the_choices(section, message):
    with pytest.raises(ValueError) as e:
        from_section(TrainConfig, section, "params.yaml [student]")
    assert message in str(e.value)


def test_device_auto_selection(monkeypatch):
    from tinycls.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda" and resolve_device("cpu").type == "cpu"


def _recording_fit(tmp_path, labels=None, **kw):
    seen = []

    def record(logits, y, x):
        seen.append((y.clone(), x.shape[0]))
        return torch.nn.functional.cross_entropy(logits, y)

    x, y = class_arrays(47, 0)  # odd: the last batch has 15 images
    cfg = TrainConfig(epochs=1, batch_size=16, device="cpu", **kw)
    seed_everything(0)
    fit(
        build_model(ARCH, 3),
        (x, y if labels is None else labels),
        class_arrays(24, 1),
        cfg,
        tmp_path / "b.pt",
        META,
        criterion=record,
        progress=False,
    )
    return seen


def test_cutmix_is_applied_through_timm(tmp_path):
    seen = _recording_fit(tmp_path, cutmix_prob=1.0, label_smoothing=0.0)
    assert all(t.ndim == 2 and t.shape[1] == 3 and n % 2 == 0 for t, n in seen)  # soft targets, even batches
    for t, _ in seen:
        assert torch.allclose(t.sum(1), torch.ones(len(t)))
    mixed = sum(int(((t > 0) & (t < 1)).any(1).sum()) for t, _ in seen)
    assert mixed > 0  # some images carry two labels: a box was pasted


def test_mix_blends_images_and_labels_through_timm(tmp_path):
    seen = _recording_fit(tmp_path, mix=1.0, label_smoothing=0.0)
    assert all(t.ndim == 2 and t.shape[1] == 3 and n % 2 == 0 for t, n in seen)  # soft targets, even batches
    assert all(torch.allclose(t.sum(1), torch.ones(len(t))) for t, _ in seen)
    two = sum(int(((t > 0) & (t < 1)).sum(1).eq(2).sum()) for t, _ in seen)
    assert two > 30  # nearly every image carries two labels, each its own weight (timm's per-image mode)
    with pytest.raises(ValueError, match="mix > 0 needs class-index labels"):
        _recording_fit(tmp_path, labels=np.full((47, 3), 1 / 3, dtype=np.float32), mix=0.5)


def test_zoom_crops_in_and_keeps_the_stream_without_it():
    from tinycls.transforms import augment

    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16)
    plain = augment(x, True, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(plain, augment(x, True, 0.1, torch.Generator().manual_seed(0), zoom=1.0))
    ones = torch.ones(1, 3, 16, 16)
    zoomed = augment(ones, False, 0.0, torch.Generator().manual_seed(0), zoom=0.5)
    assert zoomed.min() > 0.99  # a crop inside the image: no zero fill, unlike a shift out of it
    assert not torch.equal(augment(x, False, 0.0, torch.Generator().manual_seed(0), zoom=0.5), x)


def test_no_cutmix_keeps_class_indices(tmp_path):
    seen = _recording_fit(tmp_path)
    assert all(t.ndim == 1 and t.dtype == torch.int64 for t, _ in seen) and [n for _, n in seen] == [16, 16, 15]


def test_soft_labels_train_and_refuse_cutmix(tmp_path):
    soft = np.full((47, 3), 1 / 3, dtype=np.float32)
    seen = _recording_fit(tmp_path, labels=soft)
    assert all(t.ndim == 2 and t.dtype == torch.float32 for t, _ in seen)
    with pytest.raises(ValueError, match="cutmix_prob > 0 needs class-index labels"):
        _recording_fit(tmp_path, labels=soft, cutmix_prob=0.5)


def test_ema_weights_are_what_is_saved(tmp_path):
    model, _, _ = _fit(tmp_path, epochs=1, ema_decay=0.9)
    saved, _ = load_checkpoint(tmp_path / "best.pt")
    live = model.state_dict()
    differs = [k for k, v in saved.state_dict().items() if v.is_floating_point() and not torch.equal(v, live[k])]
    assert differs  # the EMA copy, not the live weights
