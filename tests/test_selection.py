import dataclasses
import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from tests_support import TINY_OVERRIDES

from dann.config import compose_config
from dann.data import domains, moons_domains
from dann.experiment import train
from dann.models import build_adaptation_model, classifier_head, dense_stack
from dann.selection import (
    VALIDATORS,
    LabelFreeEvidence,
    _sigmoid,
    batch_nuclear_norm,
    density_ratio,
    dev_risk,
    information_maximization,
    label_free_evidence,
    neighborhood_density,
    reverse_validation_accuracy,
    validator,
)


def predictions_only(logits) -> LabelFreeEvidence:
    """Evidence holding only target logits: what the prediction-based validators read."""
    return LabelFreeEvidence(None, None, None, None, None, tf.constant(logits, tf.float32))


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
    model = build_adaptation_model(dense_stack([8]), classifier_head([], num_outputs=2), classifier_head([4], num_outputs=1), (2,))
    assert np.isfinite(dev_risk(label_free_evidence(model, datasets)))


def test_prediction_criteria_prefer_confident_predictions_spread_over_the_classes():
    balanced, collapsed, uncertain = 50.0 * np.eye(4)[[0, 1, 2, 3] * 4], 50.0 * np.eye(4)[[2] * 16], np.zeros((16, 4))
    scores = {
        name: {score.__name__: score(predictions_only(logits)) for score in (information_maximization, batch_nuclear_norm)}
        for name, logits in (("balanced", balanced), ("collapsed", collapsed), ("uncertain", uncertain))
    }
    assert scores["balanced"]["information_maximization"] == pytest.approx(np.log(4), abs=1e-6)
    assert scores["collapsed"]["information_maximization"] == pytest.approx(0.0, abs=1e-6)
    assert scores["uncertain"]["information_maximization"] == pytest.approx(0.0, abs=1e-6)
    # Nuclear norm / N: one-hot rows spread evenly over C classes, sqrt(C N) / N; one class, sqrt(N) / N; uniform rows, sqrt(N / C) / N.
    assert scores["balanced"]["batch_nuclear_norm"] == pytest.approx(np.sqrt(4 * 16) / 16)
    assert scores["collapsed"]["batch_nuclear_norm"] == pytest.approx(np.sqrt(16) / 16)
    assert scores["uncertain"]["batch_nuclear_norm"] == pytest.approx(np.sqrt(16 / 4) / 16)
    assert scores["balanced"]["batch_nuclear_norm"] > scores["uncertain"]["batch_nuclear_norm"]


def test_improves_follows_each_validator_direction():
    lower, higher = VALIDATORS["dev_risk"], VALIDATORS["source_test_accuracy"]
    assert lower.improves(0.5, float("nan")) and lower.improves(0.4, 0.5) and not lower.improves(0.6, 0.5)
    assert higher.improves(0.9, 0.8) and not higher.improves(0.8, 0.8)


def test_a_validator_is_registered_by_one_decorator():
    @validator("lower")
    def planted_validator(evidence):
        return 0.0

    try:
        assert VALIDATORS["planted_validator"].prefers == "lower" and VALIDATORS["planted_validator"].score is planted_validator
    finally:
        del VALIDATORS["planted_validator"]
    with pytest.raises(ValueError, match="'higher' or 'lower'"):
        validator("larger")


# One validator of each direction: every registered one goes through the same selection code.
@pytest.mark.parametrize("criterion", ["dev_risk", "soft_neighborhood_density"])
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
    assert set(VALIDATORS) <= set(evaluations[0])  # every registered validator is logged at each evaluation
    best = (min if VALIDATORS[criterion].prefers == "lower" else max)(evaluations, key=lambda line: line[criterion])
    assert results["selected_step"] == best["step"]
    assert results["target_test_accuracy"] == best["target_test_accuracy"]  # the saved model is the selected one


def test_soft_neighborhood_density_is_higher_for_clustered_than_for_scattered_predictions():
    rng = np.random.default_rng(0)
    clustered = np.eye(4)[rng.integers(0, 4, 200)] * 0.9 + 0.025  # four tight clusters
    scattered = rng.dirichlet(np.ones(4), 200)
    assert neighborhood_density(clustered) > neighborhood_density(scattered)
    # Identical rows: each neighbourhood is uniform over the N - 1 others.
    assert neighborhood_density(np.full((50, 4), 0.25)) == pytest.approx(np.log(49))
    snd = VALIDATORS["soft_neighborhood_density"].score(predictions_only(np.log(clustered)))
    assert snd == pytest.approx(neighborhood_density(clustered))


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
        model = build_adaptation_model(identity, head, classifier_head([4], num_outputs=1), (2,))
        return reverse_validation_accuracy(label_free_evidence(model, datasets))

    assert reverse_accuracy([[-1.0, 1.0], [0.0, 0.0]]) == 1.0  # logit of class 1 grows with x0
    assert 0.3 < reverse_accuracy([[0.0, 0.0], [-1.0, 1.0]]) < 0.7  # pseudo-labels by x1 > 0: unrelated to the class


def test_reverse_validation_never_reads_the_target_test_split():
    datasets = moons_domains(seed=0, num_train=200, num_test=200)
    poisoned = tf.data.Dataset.from_tensor_slices((np.full((200, 2), np.nan, np.float32), np.zeros(200, np.int64)))
    datasets = dataclasses.replace(datasets, target_test=poisoned)
    model = build_adaptation_model(dense_stack([8]), classifier_head([], num_outputs=2), classifier_head([4], num_outputs=1), (2,))
    assert 0.0 <= reverse_validation_accuracy(label_free_evidence(model, datasets)) <= 1.0


def test_samples_that_stand_for_a_split_are_seeded_uniform_samples_whatever_the_order_on_disk():
    # Class-sorted splits, as image folders of train/<class>/ are on disk: the first 100 are all class 0.
    inputs = np.repeat(np.arange(4, dtype=np.float32), 500)[:, None]

    def sorted_split():
        return tf.data.Dataset.from_tensor_slices((inputs, inputs[:, 0].astype(np.int64)))

    splits = {name: sorted_split() for name in ("source_test", "target_train", "target_test")}
    datasets = dataclasses.replace(moons_domains(seed=0), **splits)
    label_free, tested = domains.label_free_samples(datasets, 100), domains.test_samples(datasets, 100)
    for domain, (_, labels) in [*label_free.items(), *tested.items()]:
        shares = np.bincount(labels.numpy(), minlength=4) / 100
        assert len(labels) == 100 and shares.min() > 0.1, (domain, shares)  # 0.25 each, give or take
        assert np.bincount(labels.numpy()[:40], minlength=4).min() > 0  # a prefix stands for the split too
    assert domains.label_free_samples(datasets, 100)["target"] is label_free["target"]  # drawn once, then kept
    np.testing.assert_array_equal(domains.label_free_samples(datasets, 100)["target"][1], label_free["target"][1])
    other = dataclasses.replace(datasets)  # another run: the same seed draws the same sample
    np.testing.assert_array_equal(domains.label_free_samples(other, 100)["target"][1], label_free["target"][1])
    whole = domains.label_free_samples(other, 5000)["source"][1].numpy()  # more than the split holds: all of it, shuffled
    assert sorted(whole) == sorted(inputs[:, 0].astype(np.int64)) and list(whole[:500]) != [0] * 500


def test_a_split_in_memory_and_a_streamed_one_give_the_same_sample_in_the_same_order():
    examples = np.arange(300, dtype=np.float32)[:, None]
    in_memory = tf.data.Dataset.from_tensor_slices((examples, examples[:, 0].astype(np.int64)))
    streamed = in_memory.filter(lambda x, y: True)  # of unknown length: read example by example
    for seed, size in [(0, 40), (3, 300), (5, 1000)]:
        tf.random.set_seed(seed)  # as a run seeds it: the shuffle's order depends on the global seed too
        drawn = [y for _, y in domains.representative_sample(in_memory, size, seed).as_numpy_iterator()]
        tf.random.set_seed(seed)
        expected = [y for _, y in domains.representative_sample(streamed, size, seed).as_numpy_iterator()]
        assert drawn == expected and len(drawn) == min(size, 300) and drawn != sorted(drawn)
