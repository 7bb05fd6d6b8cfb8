"""Teachers for distillation: ensembles average softened probabilities, each teacher sees the
student's batch at its own size and normalization, teachers never learn, and fit distils."""

import dataclasses

import pytest
import torch

from tests.conftest import class_arrays
from tinycls import loop as loop_module
from tinycls.checkpoint import save_checkpoint
from tinycls.distill import Distiller, KDConfig, Teachers, create_distiller, load_teachers
from tinycls.models import build_model
from tinycls.train import TrainConfig, fit
from tinycls.transforms import to_input

ARCH = "pytorchcv:shufflenet_g3_wd4"
S_MEAN, S_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class Fixed(torch.nn.Module):
    """A 'teacher' whose logits are given, whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def _meta(size: int = 16, mean=S_MEAN, std=S_STD, classes=("r", "g", "b")) -> dict:
    return {
        "arch": ARCH,
        "arch_kwargs": {},
        "classes": list(classes),
        "input_size": size,
        "mean": list(mean),
        "std": list(std),
    }


def test_one_teacher_keeps_its_softened_probabilities_and_argmax():
    z = torch.tensor([[2.0, 0.5, -1.0]])
    t = Teachers([Fixed(z)], [_meta()], [1.0], 4.0, S_MEAN, S_STD)
    out = t(torch.zeros(2, 3, 16, 16))
    assert torch.allclose((out / 4.0).softmax(1), (z / 4.0).softmax(1).expand(2, -1), atol=1e-6)
    assert out.argmax(1).tolist() == [0, 0]


def test_ensemble_averages_softened_probabilities_with_weights():
    a, b = torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    t = Teachers([Fixed(a), Fixed(b)], [_meta(), _meta()], [3.0, 1.0], 2.0, S_MEAN, S_STD)
    got = (t(torch.zeros(1, 3, 16, 16)) / 2.0).softmax(1)
    want = 0.75 * (a / 2.0).softmax(1) + 0.25 * (b / 2.0).softmax(1)
    assert torch.allclose(got, want, atol=1e-6)


def test_each_teacher_sees_the_batch_at_its_own_size_and_normalization():
    torch.manual_seed(0)
    teacher = build_model(ARCH, 3).eval()
    meta = _meta(size=24, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    images, _ = class_arrays(4, 0)
    student_x = to_input(torch.from_numpy(images), 16, S_MEAN, S_STD)  # cache is 16 px
    got = Teachers([teacher], [meta], [1.0], 1.0, S_MEAN, S_STD)(student_x)
    with torch.no_grad():
        direct = teacher(to_input(torch.from_numpy(images), 24, tuple(meta["mean"]), tuple(meta["std"])))
    assert torch.allclose(got.softmax(1), direct.softmax(1), atol=1e-4)


def test_bad_teacher_settings():
    with pytest.raises(ValueError, match="must all be > 0"):
        Teachers([Fixed(torch.zeros(1, 3))], [_meta()], [0.0], 1.0, S_MEAN, S_STD)
    with pytest.raises(ValueError, match="1 teacher.*2 weight"):
        Teachers([Fixed(torch.zeros(1, 3))], [_meta()], [1.0, 1.0], 1.0, S_MEAN, S_STD)
    with pytest.raises(ValueError, match="temperature: 0.0 must be > 0"):
        Teachers([Fixed(torch.zeros(1, 3))], [_meta()], [1.0], 0.0, S_MEAN, S_STD)


def test_teacher_with_other_classes_is_refused(tmp_path):
    save_checkpoint(tmp_path / "t.pt", build_model(ARCH, 3), _meta(classes=("r", "g", "x")))
    with pytest.raises(ValueError, match=r"t.pt: teacher classes \['r', 'g', 'x'\] differ from the data's"):
        load_teachers([tmp_path / "t.pt"], ["r", "g", "b"], [1.0], 4.0, S_MEAN, S_STD)


def _teacher(tmp_path):
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "t.pt", build_model(ARCH, 3), _meta())
    return load_teachers([tmp_path / "t.pt"], ["r", "g", "b"], [1.0], 4.0, S_MEAN, S_STD)


def _fit(tmp_path, teachers, kd, outputs="per_batch", **cfg):
    torch.manual_seed(0)
    model = build_model(ARCH, 3)
    c = TrainConfig(epochs=1, batch_size=16, device="cpu", **cfg)
    kd = dataclasses.replace(kd, teacher_outputs=outputs) if kd else None
    distiller = Distiller(kd, teachers) if kd is not None and kd.on else None
    train, val = class_arrays(48, 0), class_arrays(24, 1)
    return fit(model, train, val, c, tmp_path / "s.pt", _meta(), distiller, progress=False)


def test_fit_distils_without_touching_the_teacher(tmp_path):
    teachers = _teacher(tmp_path)
    before = {k: v.clone() for k, v in teachers.state_dict().items()}
    result = _fit(tmp_path, teachers, KDConfig("vanilla", 4.0, 0.3))
    assert result.teacher_outputs == "per_batch"
    assert all(torch.equal(v, before[k]) for k, v in teachers.state_dict().items())  # BN stats too
    assert all(p.grad is None and not p.requires_grad for p in teachers.parameters())
    assert not teachers.training and not teachers.train().training


def test_teacher_outputs_are_cached_when_no_augmentation_is_random(tmp_path, monkeypatch):
    teachers = _teacher(tmp_path)
    calls = []
    forward = Teachers.forward
    monkeypatch.setattr(Teachers, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    result = _fit(tmp_path, teachers, KDConfig("true_label", 4.0, 0.3), hflip=False, translate=0.0)
    assert result.teacher_outputs == "cached" and calls == [48]  # once, before the first step
    cached = teachers.logits_for(class_arrays(48, 0)[0], 16, torch.device("cpu"))
    per_batch = forward(teachers, to_input(torch.from_numpy(class_arrays(48, 0)[0]), 16, S_MEAN, S_STD))
    assert torch.allclose(cached, per_batch, atol=1e-5)


def test_cached_teacher_outputs_serve_every_augmented_view(tmp_path, monkeypatch):
    teachers = _teacher(tmp_path)
    calls = []
    forward = Teachers.forward
    monkeypatch.setattr(Teachers, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    with pytest.warns(UserWarning, match="'cached': every augmented view is taught .* 'views' is consistent"):
        result = _fit(tmp_path, teachers, KDConfig("true_label", 4.0, 0.3), "cached", hflip=True, translate=0.1)
    assert result.teacher_outputs == "cached_unaugmented" and calls == [48]  # one pass, not one per step
    with pytest.raises(ValueError, match="teacher_outputs 'cached' with cutmix_prob > 0.*set cutmix_prob: 0.0"):
        _fit(tmp_path, teachers, KDConfig("true_label", 4.0, 0.3), "cached", cutmix_prob=0.5)
    with pytest.raises(ValueError, match="teacher_outputs 'views' with cutmix_prob > 0.*teacher_outputs: per_batch"):
        _fit(tmp_path, teachers, KDConfig("true_label", 4.0, 0.3), "views", cutmix_prob=0.5)
    with pytest.raises(ValueError, match="teacher_outputs: 'always' is not one of views, per_batch, cached"):
        _fit(tmp_path, teachers, KDConfig("true_label", 4.0, 0.3), "always")


def test_kd_alpha_one_trains_exactly_like_no_kd(tmp_path):
    plain = _fit(tmp_path, None, None)
    a = torch.load(tmp_path / "s.pt", weights_only=True)["state_dict"]
    kd = _fit(tmp_path, _teacher(tmp_path), KDConfig("vanilla", 4.0, 1.0))
    b = torch.load(tmp_path / "s.pt", weights_only=True)["state_dict"]
    assert plain.best_f1 == kd.best_f1 and all(torch.equal(a[k], b[k]) for k in a)


def test_create_distiller_decides_whether_a_fit_distils(tmp_path):
    classes, args = ["r", "g", "b"], (S_MEAN, S_STD)
    missing = {"teacher": tmp_path / "absent.pt"}  # never opened when nothing is distilled
    assert create_distiller(None, missing, classes, *args) is None
    assert create_distiller(KDConfig("none", 4.0, 0.3), missing, classes, *args) is None
    assert create_distiller(KDConfig("vanilla", 4.0, 1.0), missing, classes, *args) is None  # all weight on the labels
    with pytest.raises(FileNotFoundError, match="absent.pt: no such checkpoint"):
        create_distiller(KDConfig("vanilla", 4.0, 0.3), missing, classes, *args)
    with pytest.raises(ValueError, match=r"teachers: \['assistant'\] have no checkpoint here \(known: teacher\)"):
        create_distiller(KDConfig("vanilla", 4.0, 0.3, teachers=["assistant"]), missing, classes, *args)
    _teacher(tmp_path)
    d = create_distiller(KDConfig("true_label", 20.0, 0.3), {"teacher": tmp_path / "t.pt"}, classes, *args)
    assert d.teachers.temperature == 20.0 and d.kd.mode == "true_label"  # the temperature has one owner


def test_kd_config_is_validated_once_with_every_key(tmp_path):
    for kwargs, message in [
        ({"teachers": ["oracle"]}, "teachers: 'oracle' is not one of teacher, assistant, student"),
        ({"teachers": []}, "teachers: [] must be a non-empty list"),
        ({"teachers": ["teacher", "teacher"]}, "lists a teacher twice"),
        ({"weights": [1.0, 2.0]}, "must be empty (equal) or give one weight per teacher"),
        ({"weights": [0.0]}, "must all be numbers > 0"),
        ({"teacher_outputs": "always"}, "teacher_outputs: 'always' is not one of views, per_batch, cached"),
        ({"views": 0}, "views: 0 must be a whole number in [1, 256]"),
        ({"views": 2.5}, "views: 2.5 must be a whole number in [1, 256]"),
    ]:
        with pytest.raises(ValueError) as e:
            KDConfig("vanilla", **kwargs)
        assert message in str(e.value)
    with pytest.raises(ValueError, match="teachers built at T=4.0, kd asks T=20.0"):
        Distiller(KDConfig("vanilla", 20.0, 0.3), _teacher(tmp_path))


class ChannelMean(torch.nn.Module):
    """A perfect teacher for _data: the class is the brightest channel."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[-1])
        return x.mean((2, 3)) * 10


@pytest.mark.parametrize(
    ("augment", "outputs", "expected"),  # exact cache, the teacher on every batch, cache with augmentation
    [
        (False, "per_batch", "cached"),
        (False, "views", "cached"),
        (True, "per_batch", "per_batch"),
        (True, "views", "views"),
        (True, "cached", "cached_unaugmented"),
    ],
)
def test_teacher_outputs_line_up_with_their_images(tmp_path, monkeypatch, augment, outputs, expected):
    from tinycls.distill import DistillationLoss

    teachers = Teachers([ChannelMean()], [_meta()], [1.0], 4.0, S_MEAN, S_STD)
    agree = []
    forward = DistillationLoss.forward

    def spy(self, s, t, y):
        agree.append(bool((t.argmax(1) == y).all()))
        return forward(self, s, t, y)

    monkeypatch.setattr(DistillationLoss, "forward", spy)
    result = _fit(tmp_path, teachers, KDConfig("true_label", 4.0, 0.3), outputs, hflip=augment, translate=0.0)
    assert result.teacher_outputs == expected
    assert len(agree) == 3 and all(agree)  # a shuffled cache would pair outputs with other images


def test_a_larger_teacher_sees_the_batch_at_its_own_size(tmp_path):
    spy = ChannelMean()
    teachers = Teachers([spy], [_meta(size=32)], [1.0], 4.0, S_MEAN, S_STD)
    seen = []

    def record(module, inputs):
        seen.append(inputs[0].shape[-1])

    torch.manual_seed(0)
    model = build_model(ARCH, 3)
    model.register_forward_pre_hook(record)
    cfg = TrainConfig(epochs=1, batch_size=16, device="cpu")
    kd = KDConfig("vanilla", 4.0, 0.3)
    train, val = class_arrays(48, 0), class_arrays(24, 1)
    fit(model, train, val, cfg, tmp_path / "s.pt", _meta(), Distiller(kd, teachers), progress=False)
    assert set(spy.sizes) == {32} and set(seen) == {16}  # prepared at 32 px, the student gets 16 px


def test_cached_outputs_leave_the_students_batch_at_its_own_size(tmp_path, monkeypatch):
    spy = ChannelMean()
    teachers = Teachers([spy], [_meta(size=32)], [1.0], 4.0, S_MEAN, S_STD)
    made = []
    to_input = loop_module.to_input
    monkeypatch.setattr(loop_module, "to_input", lambda x, size, *a: made.append(size) or to_input(x, size, *a))
    result = _fit(tmp_path, teachers, KDConfig("vanilla", 4.0, 0.3), "cached")
    # the teacher ran once at its 32 px; the student's 3 batches were made at its 16 px directly
    assert result.teacher_outputs == "cached_unaugmented" and set(spy.sizes) == {32} and made == [16, 16, 16]


class Pixels(torch.nn.Module):
    """A teacher that sees every pixel where it is: a fixed linear map of the flattened image, so
    a flipped or shifted image gets other logits."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * size * size, 3))
        torch.nn.init.normal_(self.net[1].weight, std=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _consistency(tmp_path, monkeypatch, outputs: str, **aug) -> tuple[list[float], str, list[int]]:
    """The largest |teacher(what the student saw) - the teacher output it was taught| per step."""
    from tinycls.distill import DistillationLoss

    torch.manual_seed(1)
    teachers = Teachers([Pixels()], [_meta()], [1.0], 4.0, S_MEAN, S_STD)
    seen, gaps, calls = [], [], []
    forward, loss = Teachers.forward, DistillationLoss.forward
    monkeypatch.setattr(Teachers, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    monkeypatch.setattr(
        DistillationLoss,
        "forward",
        lambda self, s, t, y: gaps.append((forward(teachers, seen[-1]) - t).abs().max().item()) or loss(self, s, t, y),
    )
    torch.manual_seed(0)
    model = build_model(ARCH, 3)
    model.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    cfg = TrainConfig(epochs=2, batch_size=16, device="cpu", hflip=True, translate=0.2, **aug)
    kd = KDConfig("vanilla", 4.0, 0.3, teacher_outputs=outputs, views=4)
    train, val = class_arrays(48, 0), class_arrays(24, 1)
    result = fit(model, train, val, cfg, tmp_path / "s.pt", _meta(), Distiller(kd, teachers), progress=False)
    return gaps, result.teacher_outputs, calls


def test_fixed_views_teach_each_image_the_answer_for_its_own_pixels(tmp_path, monkeypatch):
    gaps, outputs, calls = _consistency(tmp_path, monkeypatch, "views")
    # one teacher pass per view before training, none during it; every step taught its exact pixels
    assert outputs == "views" and calls == [48] * 4 and len(gaps) == 6 and max(gaps) < 1e-4
    monkeypatch.undo()
    with pytest.warns(UserWarning):
        gaps, outputs, calls = _consistency(tmp_path, monkeypatch, "cached")
    assert outputs == "cached_unaugmented" and calls[0] == 48 and min(gaps) > 0.1  # the unaugmented image's answer


def test_zoomed_blended_views_teach_the_answer_for_the_blend(tmp_path, monkeypatch):
    # function matching: a view blends two images and zooms in; the teachers answered exactly that
    gaps, outputs, calls = _consistency(tmp_path, monkeypatch, "views", zoom=0.5, mix=1.0)
    assert outputs == "views" and calls == [48] * 4 and len(gaps) == 6 and max(gaps) < 1e-4


def test_fixed_views_are_seeded_and_used_in_turn(tmp_path):
    from tinycls.teaching import fixed_views

    v = fixed_views(100, 8, True, 0.1, seed=0)
    assert v.flip.shape == (100, 8) and v.shift.shape == (100, 8, 2) and v.partner is None and v.own is None
    assert 0.3 < v.flip.float().mean() < 0.7 and v.shift.abs().max() <= 0.2  # 0.1 of the side = 0.2 grid units
    assert torch.equal(v.scale, torch.ones(100, 8))  # zoom 1: no crop
    assert torch.equal(v.flip, fixed_views(100, 8, True, 0.1, seed=0).flip)
    assert not torch.equal(v.flip, fixed_views(100, 8, True, 0.1, seed=1).flip)
    assert not fixed_views(100, 8, False, 0.1, seed=0).flip.any()  # no flip asked, none drawn
    z = fixed_views(100, 8, True, 0.1, seed=0, zoom=0.5, mix=0.5)
    assert torch.equal(z.flip[:, 0], v.flip[:, 0])  # the first view's flips: zoom and mix draw after them
    assert 0.5 <= z.scale.min() and z.scale.max() <= 1.0 and z.scale.std() > 0.1
    assert (z.shift.abs() <= 0.2 + (1 - z.scale).unsqueeze(-1) + 1e-6).all()  # the crop stays inside, then the shift
    assert z.partner.shape == (100, 8) and 0 <= z.partner.min() and z.partner.max() < 100
    blended = z.own < 1
    assert 0.35 < blended.float().mean() < 0.65 and (z.own[blended] >= 0).all()
