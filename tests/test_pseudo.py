import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tinycls.pseudo import pseudo_table, read_probs, summarize, teacher_probs, training_sets

CLASSES = ["a", "b", "c"]
META = {"classes": CLASSES, "input_size": 4, "mean": [0.0] * 3, "std": [1.0] * 3}


class LeftRight(nn.Module):
    """Logits from the brightness of the left vs right half: mirroring swaps them."""

    def forward(self, x):
        left, right = x[..., :2].mean((1, 2, 3)), x[..., 2:].mean((1, 2, 3))
        return torch.stack([4 * left, 4 * right, torch.zeros_like(left)], 1)


def _images(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)


def test_flip_tta_averages_the_image_and_its_mirror():
    x = _images()
    plain = teacher_probs(LeftRight(), META, x, torch.device("cpu"), hflip_tta=False)
    mirrored = teacher_probs(LeftRight(), META, x[:, :, ::-1].copy(), torch.device("cpu"), hflip_tta=False)
    tta = teacher_probs(LeftRight(), META, x, torch.device("cpu"), hflip_tta=True)
    assert np.allclose(tta, (plain + mirrored) / 2, atol=1e-6) and not np.allclose(tta, plain)
    assert np.allclose(tta.sum(1), 1, atol=1e-6)


def test_table_round_trip_and_mismatches(tmp_path):
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    pseudo_table(probs, CLASSES).to_csv(tmp_path / "p.csv", index=False)
    table = pd.read_csv(tmp_path / "p.csv")
    assert table["prediction"].tolist() == ["a", "c"] and table["confidence"].tolist() == pytest.approx([0.7, 0.8])
    assert np.allclose(read_probs(table, CLASSES, 2), probs)
    with pytest.raises(ValueError, match=r"lack columns \['p_d'\]"):
        read_probs(table, ["a", "b", "d"], 2)
    with pytest.raises(ValueError, match="cover 2 images, the test split has 3"):
        read_probs(table, CLASSES, 3)


def test_summary_coverage_and_balance():
    probs = np.array([[0.95, 0.05, 0], [0.5, 0.4, 0.1], [0.0, 0.05, 0.95], [0.2, 0.7, 0.1]])
    s = summarize(probs, 0.9, CLASSES)
    assert s["coverage"] == 0.5 and s["class_balance"] == {"a": 0.5, "b": 0.25, "c": 0.25}


TRAIN = (_images(4, 1), np.array([0, 1, 2, 0]))
VAL = (_images(3, 2), np.array([1, 2, 0]))
TEST = _images(3, 3)
PROBS = np.array([[0.95, 0.05, 0.0], [0.3, 0.6, 0.1], [0.0, 0.05, 0.95]], dtype=np.float32)


def test_train_only_validates_on_val():
    train, val, selection = training_sets(TRAIN, VAL, TEST, None, "train", 0.9, "hard")
    assert train is TRAIN and val is VAL and selection == "val"


def test_all_data_validates_on_the_teacher_proxy():
    (x, y), (vx, vy), selection = training_sets(TRAIN, VAL, TEST, PROBS, "train_val", 0.9, "hard")
    assert len(x) == 7 and y.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert vx is TEST and vy.tolist() == [0, 1, 2] and selection.startswith("proxy")


@pytest.mark.parametrize(("threshold", "added"), [(0.9, [0, 2]), (0.5, [0, 1, 2]), (1.0, [])])
def test_hard_pseudo_labels_above_the_threshold(threshold, added):
    (x, y), _, _ = training_sets(TRAIN, VAL, TEST, PROBS, "train_val_and_pseudo_labelled_test", threshold, "hard")
    assert len(x) == 7 + len(added) and y[7:].tolist() == PROBS.argmax(1)[added].tolist()
    assert np.array_equal(x[7:], TEST[added])


def test_soft_pseudo_labels_keep_the_probabilities():
    (x, y), _, _ = training_sets(TRAIN, VAL, TEST, PROBS, "train_val_and_pseudo_labelled_test", 0.9, "soft")
    assert y.shape == (9, 3) and y.dtype == np.float32
    assert np.array_equal(y[:7], np.eye(3)[[0, 1, 2, 0, 1, 2, 0]]) and np.allclose(y[7:], PROBS[[0, 2]])


def test_bad_choices():
    with pytest.raises(ValueError, match="train_on: 'all' is not one of train, train_val"):
        training_sets(TRAIN, VAL, TEST, PROBS, "all", 0.9, "hard")
    with pytest.raises(ValueError, match="labels: 'fuzzy' is not one of hard, soft"):
        training_sets(TRAIN, VAL, TEST, PROBS, "train", 0.9, "fuzzy")
    with pytest.raises(ValueError, match="needs the teacher's pseudo labels"):
        training_sets(TRAIN, VAL, TEST, None, "train_val", 0.9, "hard")


@pytest.mark.parametrize("train_on", ["train_val", "train_val_and_pseudo_labelled_test"])
def test_a_weak_teacher_neither_picks_epochs_nor_trains(train_on):
    train, val, selection = training_sets(TRAIN, VAL, TEST, PROBS, train_on, 0.0, "hard", 0.46, 0.6)
    assert train is TRAIN and val is VAL
    assert selection.startswith(f"val (fallback from {train_on}: the teacher's val F1 0.4600 < min_teacher_f1 0.6")
    # a teacher at or above the threshold keeps the proxy
    _, (vx, _), selection = training_sets(TRAIN, VAL, TEST, PROBS, train_on, 0.0, "hard", 0.6, 0.6)
    assert vx is TEST and selection.startswith("proxy")
