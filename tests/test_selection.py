import dataclasses
import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from tests_support import TINY_OVERRIDES

from dann.config import compose_config
from dann.data import moons_domains
from dann.experiment import train
from dann.health import prediction_health
from dann.health.predictions import soft_neighborhood_density
from dann.models import build_dann_model, classifier_head, dense_stack
from dann.selection import CRITERIA, _sigmoid, density_ratio, dev_risk, improves, label_free_features, reverse_validation_accuracy


def test_density_ratio_is_one_without_shift_and_follows_the_target_with_it():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(2000, 3))
    same = density_ratio(source, rng.normal(size=(2000, 3)))
    assert abs(np.mean(same) - 1.0) < 0.1

    shifted = density_ratio(source, rng.normal(size=(2000, 3)) + [1.0, 0.0, 0.0])
    # The true ratio is exp(x0 - 1/2): source points towards the target weigh more.
    assert np.corrcoef(shifted, np.exp(source[:, 0] - 0.5))[0, 1] > 0.9
    assert shifted[source[:, 0] > 1].mean() > 1.5 > 0.7 > shifted[source[:, 0] < -1].mean()


def test_the_domain_classifier_sigmoid_does_not_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in exp" was a RuntimeWarning in ordinary runs
        values = _sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0])


def test_dev_risk_never_reads_the_target_test_split():
    datasets = moons_domains(seed=0, num_train=200, num_test=200)
    poisoned = tf.data.Dataset.from_tensor_slices((np.full((200, 2), np.nan, np.float32), np.zeros(200, np.int64)))
    datasets = dataclasses.replace(datasets, target_test=poisoned)  # any use of it would give NaN
    model = build_dann_model(dense_stack([8]), classifier_head([], num_outputs=2), classifier_head([4], num_outputs=1), (2,))
    assert np.isfinite(dev_risk(model, label_free_features(model, datasets)))


def test_prediction_criteria_prefer_confident_predictions_spread_over_the_classes():
    balanced, collapsed, uncertain = 50.0 * np.eye(4)[[0, 1, 2, 3] * 4], 50.0 * np.eye(4)[[2] * 16], np.zeros((16, 4))
    scores = {
        name: prediction_health(logits) for name, logits in (("balanced", balanced), ("collapsed", collapsed), ("uncertain", uncertain))
    }
    assert scores["balanced"]["information_maximization"] == pytest.approx(np.log(4), abs=1e-6)
    assert scores["collapsed"]["information_maximization"] == pytest.approx(0.0, abs=1e-6)
    assert scores["uncertain"]["information_maximization"] == pytest.approx(0.0, abs=1e-6)
    # Nuclear norm / N: one-hot rows spread evenly over C classes, sqrt(C N) / N; one class, sqrt(N) / N; uniform rows, sqrt(N / C) / N.
    assert scores["balanced"]["batch_nuclear_norm"] == pytest.approx(np.sqrt(4 * 16) / 16)
    assert scores["collapsed"]["batch_nuclear_norm"] == pytest.approx(np.sqrt(16) / 16)
    assert scores["uncertain"]["batch_nuclear_norm"] == pytest.approx(np.sqrt(16 / 4) / 16)
    assert scores["balanced"]["batch_nuclear_norm"] > scores["uncertain"]["batch_nuclear_norm"]


def test_improves_follows_each_criterion_direction():
    assert improves("dev_risk", 0.5, float("nan")) and improves("dev_risk", 0.4, 0.5) and not improves("dev_risk", 0.6, 0.5)
    assert improves("source_test_accuracy", 0.9, 0.8) and not improves("source_test_accuracy", 0.8, 0.8)


@pytest.mark.parametrize("criterion", list(CRITERIA))
def test_select_keeps_the_preferred_evaluation(tmp_path, criterion):
    cfg = compose_config(
        [
            "+experiment=moons",
            "data.num_train=64",
            "data.num_test=64",
            *TINY_OVERRIDES,
            "trainer.steps=60",
            "trainer.eval_every=10",
            f"trainer.select={criterion}",
        ]
    )
    results = train(cfg, tmp_path)
    evaluations = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evaluations = [line for line in evaluations if criterion in line]
    assert [line["step"] for line in evaluations] == [10, 20, 30, 40, 50, 60]
    best = (min if CRITERIA[criterion] == "lower" else max)(evaluations, key=lambda line: line[criterion])
    assert results["selected_step"] == best["step"]
    assert results["target_test_accuracy"] == best["target_test_accuracy"]  # the saved model is the selected one


def test_soft_neighborhood_density_is_higher_for_clustered_than_for_scattered_predictions():
    rng = np.random.default_rng(0)
    clustered = np.eye(4)[rng.integers(0, 4, 200)] * 0.9 + 0.025  # four tight clusters
    scattered = rng.dirichlet(np.ones(4), 200)
    assert soft_neighborhood_density(clustered) > soft_neighborhood_density(scattered)
    # Identical rows: each neighbourhood is uniform over the N - 1 others.
    assert soft_neighborhood_density(np.full((50, 4), 0.25)) == pytest.approx(np.log(49))
    assert "soft_neighborhood_density" in prediction_health(np.log(clustered))


def test_reverse_validation_rewards_pseudo_labels_that_transfer_back_to_the_source():
    """Both domains: the class is the sign of x0 (the target shifted along x1). With an identity feature extractor, a
    label classifier that follows x0 scores 1 and one that follows x1 (blind to the class) about chance."""
    rng = np.random.default_rng(0)

    def domain(shift):
        x = rng.normal(size=(400, 2)).astype(np.float32) + [0.0, shift]
        x[:, 0] += np.sign(x[:, 0])  # a margin between the classes
        return tf.data.Dataset.from_tensor_slices((x, (x[:, 0] > 0).astype(np.int64)))

    source, target = domain(0.0), domain(3.0)
    datasets = dataclasses.replace(moons_domains(seed=0, num_train=8, num_test=8), source_test=source, target_train=target)
    identity = keras.Sequential([keras.layers.Input((2,)), keras.layers.Identity()])

    def reverse_accuracy(kernel):
        head = keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(2)])
        head.layers[-1].set_weights([np.array(kernel, np.float32), np.zeros(2, np.float32)])
        model = build_dann_model(identity, head, classifier_head([4], num_outputs=1), (2,))
        return reverse_validation_accuracy(model, label_free_features(model, datasets))

    assert reverse_accuracy([[-1.0, 1.0], [0.0, 0.0]]) == 1.0  # logit of class 1 grows with x0
    assert 0.3 < reverse_accuracy([[0.0, 0.0], [-1.0, 1.0]]) < 0.7  # pseudo-labels by x1 > 0: unrelated to the class


def test_reverse_validation_never_reads_the_target_test_split():
    datasets = moons_domains(seed=0, num_train=200, num_test=200)
    poisoned = tf.data.Dataset.from_tensor_slices((np.full((200, 2), np.nan, np.float32), np.zeros(200, np.int64)))
    datasets = dataclasses.replace(datasets, target_test=poisoned)
    model = build_dann_model(dense_stack([8]), classifier_head([], num_outputs=2), classifier_head([4], num_outputs=1), (2,))
    assert 0.0 <= reverse_validation_accuracy(model, label_free_features(model, datasets)) <= 1.0
