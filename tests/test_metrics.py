import math

import numpy as np
import pytest

from doodle.metrics import accuracy, map_at_k, per_class_accuracy, summarize, top_k


def test_map3_hand_worked_hits_at_ranks_1_2_3_and_a_miss():
    scores = np.array([[0.9, 0.05, 0.03, 0.02],   # truth 0 at rank 1 -> 1
                       [0.5, 0.4, 0.06, 0.04],    # truth 1 at rank 2 -> 1/2
                       [0.5, 0.3, 0.15, 0.05],    # truth 2 at rank 3 -> 1/3
                       [0.4, 0.3, 0.2, 0.1]])     # truth 3 at rank 4 -> 0
    target = np.array([0, 1, 2, 3])
    assert map_at_k(scores, target, 3) == pytest.approx(11 / 24)
    assert summarize(scores, target)["val/map3"] == pytest.approx(11 / 24)
    assert accuracy(scores, target) == pytest.approx(1 / 4)


def test_top_k_best_first_and_ties_go_to_the_lower_index():
    scores = np.array([[0.1, 0.7, 0.2, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 2.0, 1.0]])
    assert top_k(scores, 3).tolist() == [[1, 2, 0], [0, 1, 2], [1, 2, 3]]


def test_top_k_with_fewer_classes_than_k():
    assert top_k(np.array([[0.2, 0.8]]), 3).tolist() == [[1, 0]]


def test_map3_of_empty_input_is_nan():
    assert math.isnan(map_at_k(np.zeros((0, 4)), np.zeros(0, np.int64)))


def test_per_class_accuracy_with_an_absent_class():
    scores = np.eye(3)[[0, 0, 1, 2]]  # predictions 0, 0, 1, 2
    target = np.array([0, 1, 1, 1])
    acc = per_class_accuracy(scores, target, n_classes=4)
    assert acc[0] == 1.0
    assert acc[1] == pytest.approx(1 / 3)
    assert math.isnan(acc[2]) and math.isnan(acc[3])


def test_ece_hand_worked_and_reliability_bins():
    from doodle.metrics import expected_calibration_error, reliability

    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    target = np.array([0, 1, 0, 0])  # 0.9-bin: 1 of 2 right (gap 0.4); 0.6-bin: 2 of 2 right (gap 0.4)
    assert expected_calibration_error(probs, target, n_bins=10) == pytest.approx(0.4)
    r = reliability(probs, target, n_bins=10)
    assert r["count"].tolist() == [0, 0, 0, 0, 0, 0, 2, 0, 0, 2] and r["accuracy"][9] == pytest.approx(0.5)


def test_temperature_fixes_overconfidence_and_keeps_the_ranking():
    from doodle.metrics import expected_calibration_error, fit_temperature, softmax

    rng = np.random.default_rng(0)
    target = rng.integers(0, 10, 4000)
    logits = rng.normal(0, 1, (4000, 10))
    logits[np.arange(4000), target] += 1.5  # a model that is right ~55% of the time...
    sharp = 4 * logits  # ...and far too sure of itself
    t = fit_temperature(sharp, target)
    assert t > 2  # the sharpening is mostly undone
    before, after = softmax(sharp, np.float64), softmax(sharp / t, np.float64)
    assert expected_calibration_error(after, target) < expected_calibration_error(before, target) / 4
    assert (before.argsort(1) == after.argsort(1)).all()
    assert map_at_k(before, target) == map_at_k(after, target)
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0
