"""Label-free training health: the spread of target predictions, logged at every evaluation."""

import json
import math

import numpy as np
import pytest

from dann.health import prediction_health
from dann.train import train


def test_balanced_confident_predictions():
    health = prediction_health(50.0 * np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]])
    assert health["target_prediction_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert health["target_class_entropy"] == pytest.approx(math.log(4))
    assert health["target_largest_class_share"] == 0.25


def test_collapsed_and_uncertain_predictions():
    collapsed = prediction_health(np.tile([1.0, 0.0, 0.0], (10, 1)))
    assert collapsed["target_class_entropy"] == pytest.approx(0.0)
    assert collapsed["target_largest_class_share"] == 1.0
    uniform = prediction_health(np.zeros((10, 3)))
    assert uniform["target_prediction_entropy"] == pytest.approx(math.log(3))


def test_every_evaluation_logs_the_health_figures(tiny_moons_cfg, tmp_path):
    train(tiny_moons_cfg, tmp_path)
    evaluations = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "target_test_accuracy" in line]
    keys = ("target_class_entropy", "target_largest_class_share", "target_prediction_entropy", "domain_classifier_accuracy")
    assert evaluations and all(all(key in record for key in (*keys, "proxy_a_distance_features")) for record in evaluations)
