import numpy as np
import pytest

from tinycls.score import competition_score, macro_f1, score_report

BASE = {"baseline_macs": 13_863_553, "baseline_f1": 0.8365}


def test_worked_example():
    s = competition_score(1_083_210, 0.6002, **BASE)
    assert round(s["score_macs"], 4) == 0.0781 and round(s["score_f1"], 4) == 0.2825
    assert round(s["score"], 4) == 0.3606


def test_above_baseline_counts_half_and_floor_rule():
    assert competition_score(0, 0.9, **BASE)["score_f1"] == pytest.approx(0.5 * (1 - 0.9 / 0.8365))
    assert competition_score(0, 0.49, **BASE)["score_f1"] == 1.0
    assert competition_score(0, 0.49, **BASE, f1_floor=0.4)["score_f1"] == pytest.approx(1 - 0.49 / 0.8365)


def test_bad_values():
    with pytest.raises(ValueError, match="f1=1.5"):
        competition_score(1, 1.5, **BASE)
    with pytest.raises(ValueError, match="baseline_macs=0"):
        competition_score(1, 0.5, 0, 0.8)


def test_macro_f1_counts_absent_classes_and_report():
    y, p = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])
    assert macro_f1(y, p, 2) == 1.0
    assert macro_f1(y, p, 3) == pytest.approx(2 / 3)
    r = score_report(y, p, ["a", "b"], 100, 10, **BASE, f1_floor=0.5)
    assert r["per_class_f1"] == {"a": 1.0, "b": 1.0} and r["accuracy"] == 1.0 and r["macs"] == 100
