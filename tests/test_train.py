import numpy as np
import pytest
import torch

from tinycls.config import from_section
from tinycls.models import build_model, load_checkpoint
from tinycls.train import TrainConfig, fit, seed_everything

ARCH = "pytorchcv:shufflenet_g3_wd4"


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = np.clip(rng.normal(60, 30, (n, 16, 16, 3)), 0, 255)
    x[np.arange(n), :, :, y] += 150  # the class is the bright channel
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


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
    result = fit(model, _data(48, 0), _data(24, 1), cfg, tmp_path / "best.pt", META, log=rows.append, progress=False)
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
            _data(48, 0),
            _data(24, 1),
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
    ("section", "message"),
    [
        ({"epochs": 1, "batch_size": 8, "optimizer": "adam"}, "[student].optimizer: 'adam' is not one of adamw, sgd."),
        ({"epochs": 1, "batch_size": 8, "lr": "5e-4"}, "[student].lr: '5e-4' is not a float (write floats with a dot"),
        ({"epochs": 0, "batch_size": 8}, "[student].epochs: 0 must be >= 1."),
        ({"epochs": 1, "batch_size": 8, "lrate": 0.1}, "[student]: unknown key(s) ['lrate']"),
        ({"batch_size": 8}, "[student]: missing key(s) ['epochs']"),
        ({"epochs": 1, "batch_size": 8, "schedule": "step"}, "schedule: 'step' is not one of cosine, onecycle."),
    ],
)
def test_config_errors_name_the_value_and_the_choices(section, message):
    with pytest.raises(ValueError) as e:
        from_section(TrainConfig, section, "params.yaml [student]")
    assert message in str(e.value)


def test_device_auto_selection(monkeypatch):
    from tinycls.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda" and resolve_device("cpu").type == "cpu"
