import math

import pytest
import torch
from torch import nn

from tinycls.distill import DistillationLoss, KDConfig, kd_kl
from tinycls.losses import F1FocalLoss, FocalLoss, SoftF1Loss

CE = nn.CrossEntropyLoss()
S = torch.zeros(1, 2)  # student: p = (0.5, 0.5)
T = torch.tensor([[math.log(3.0), 0.0]])  # teacher: p = (0.75, 0.25), argmax 0
KL = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # 0.130812 by hand


def test_kl_golden_value_and_zero_for_equal_logits():
    assert kd_kl(S, T, 1.0).item() == pytest.approx(KL, abs=1e-6)
    assert torch.allclose(kd_kl(T, T, 4.0), torch.zeros(1), atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "label", "expected"),
    [
        ("vanilla", 0, 0.5 * math.log(2) + 0.5 * KL),  # 0.411980
        ("true_label", 0, 0.5 * math.log(2) + 0.5 * KL),  # the teacher is right: distil
        ("true_label", 1, 0.5 * math.log(2)),  # the teacher is wrong: base loss only
        ("none", 1, math.log(2)),
    ],
)
def test_golden_values(mode, label, expected):
    loss = DistillationLoss(KDConfig(mode, temperature=1.0, alpha=0.5), CE)
    assert loss(S, T, torch.tensor([label])).item() == pytest.approx(expected, abs=1e-6)


def test_alpha_one_is_the_student_loss():
    s, t, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    for mode in ("vanilla", "true_label"):
        assert DistillationLoss(KDConfig(mode, 4.0, 1.0), CE)(s, t, y).item() == pytest.approx(CE(s, y).item())


def test_true_label_with_an_always_right_teacher_is_vanilla():
    s, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    t = torch.nn.functional.one_hot(y, 5).float() * 5 + torch.randn(8, 5) * 0.1  # argmax == y
    a = DistillationLoss(KDConfig("vanilla", 20.0, 0.3), CE)(s, t, y)
    b = DistillationLoss(KDConfig("true_label", 20.0, 0.3), CE)(s, t, y)
    assert a.item() == pytest.approx(b.item())


def test_no_gradient_reaches_the_teacher():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    DistillationLoss(KDConfig("vanilla", 2.0, 0.3), CE)(s, t, torch.tensor([0, 1, 2, 0])).backward()
    assert s.grad is not None and t.grad is None


def test_soft_targets_pick_the_label_by_argmax():
    soft = torch.tensor([[0.7, 0.3]])
    loss = DistillationLoss(KDConfig("true_label", 1.0, 0.5), nn.CrossEntropyLoss())
    assert loss(S, T, soft).item() == pytest.approx(0.5 * math.log(2) + 0.5 * KL, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "truelabel"}, "mode: 'truelabel' is not one of none, vanilla, true_label."),
        ({"temperature": 0.0}, "temperature: 0.0 must be > 0."),
        ({"alpha": 1.5}, "alpha: 1.5 must be in [0, 1]."),
    ],
)
def test_bad_settings(kwargs, message):
    args = {"mode": "vanilla", "temperature": 4.0, "alpha": 0.3} | kwargs
    with pytest.raises(ValueError) as e:
        KDConfig(**args)
    assert message in str(e.value)


def test_focal_golden_value_and_gamma_zero_is_cross_entropy():
    logits, y = torch.zeros(1, 2), torch.tensor([0])  # p = 0.5
    assert FocalLoss(2.0)(logits, y).item() == pytest.approx(0.25 * math.log(2))
    x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    assert FocalLoss(0.0)(x, y).item() == pytest.approx(CE(x, y).item(), abs=1e-6)


def test_soft_f1_golden_values():
    perfect = torch.tensor([[20.0, -20.0], [-20.0, 20.0]])
    assert SoftF1Loss()(perfect, torch.tensor([0, 1])).item() == pytest.approx(0.0, abs=1e-6)
    # p = 0.5 everywhere, one sample per class: tp = fp = fn = 0.5 per class -> F1 = 0.5
    assert SoftF1Loss()(torch.zeros(2, 2), torch.tensor([0, 1])).item() == pytest.approx(0.5, abs=1e-6)


def test_f1_focal_mixes_its_parts():
    x, y = torch.randn(6, 3), torch.randint(0, 3, (6,))
    expected = 0.6 * SoftF1Loss()(x, y) + 0.4 * FocalLoss(2.0)(x, y)
    assert F1FocalLoss(0.6, 2.0)(x, y).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="weight: 2 must be in"):
        F1FocalLoss(2)


def test_cross_entropy_takes_indices_and_probabilities():
    from timm.loss import SoftTargetCrossEntropy

    from tinycls.losses import CrossEntropy

    x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    soft = torch.softmax(torch.randn(6, 4), 1)
    assert CrossEntropy()(x, soft).item() == pytest.approx(SoftTargetCrossEntropy()(x, soft).item(), abs=1e-6)
    smooth = torch.nn.functional.one_hot(y, 4).float() * 0.9 + 0.1 / 4
    assert CrossEntropy(0.1)(x, y).item() == pytest.approx(SoftTargetCrossEntropy()(x, smooth).item(), abs=1e-6)


def test_focal_on_probabilities_weighs_each_class():
    logits = torch.zeros(1, 2)  # p = (0.5, 0.5)
    soft = torch.tensor([[0.25, 0.75]])
    assert FocalLoss(2.0)(logits, soft).item() == pytest.approx(0.25 * math.log(2))  # sum_k t_k = 1
    x, y = torch.randn(5, 3), torch.randint(0, 3, (5,))
    one_hot = torch.nn.functional.one_hot(y, 3).float()
    assert FocalLoss(2.0)(x, one_hot).item() == pytest.approx(FocalLoss(2.0)(x, y).item(), abs=1e-6)


def test_student_loss_by_name():
    from tinycls.losses import CrossEntropy, student_loss

    assert isinstance(student_loss("ce", 0.1), CrossEntropy)
    assert isinstance(student_loss("focal"), FocalLoss)
    f = student_loss("f1_focal", f1_weight=0.6, focal_gamma=2.0)
    assert isinstance(f, F1FocalLoss) and f.weight == 0.6
    with pytest.raises(ValueError, match="loss: 'dice' is not one of ce, focal, f1_focal."):
        student_loss("dice")
