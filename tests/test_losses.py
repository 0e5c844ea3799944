import math

import numpy as np
import pytest
import tensorflow as tf

from dann import losses


def test_label_loss_is_mean_cross_entropy():
    logits = tf.constant([[0.0, 0.0], [10.0, -10.0]])
    expected = (math.log(2.0) + math.log1p(math.exp(-20.0))) / 2
    assert float(losses.label_loss(tf.constant([0, 0]), logits)) == pytest.approx(expected, rel=1e-5)


def test_domain_loss_labels_source_zero_and_target_one():
    # Confident and right: source logits very negative, target logits very positive.
    right = tf.constant([[-20.0], [-20.0], [20.0]])
    assert float(losses.domain_loss(right, num_source=2)) < 1e-6
    assert float(losses.domain_loss(-right, num_source=2)) == pytest.approx(20.0, rel=1e-4)
    np.testing.assert_array_equal(losses.domain_labels(2, 1).numpy(), [0.0, 0.0, 1.0])


def test_prediction_entropy_bounds():
    uniform = tf.zeros((3, 4))
    assert float(losses.prediction_entropy(uniform)) == pytest.approx(math.log(4.0), rel=1e-6)
    assert float(losses.prediction_entropy(tf.constant([[50.0, 0.0, 0.0]]))) < 1e-6


def test_class_imbalance_is_zero_for_balanced_batches_and_log_c_for_a_collapsed_one():
    confident = 50.0 * tf.one_hot([0, 1, 2, 3], 4)
    assert float(losses.class_imbalance(confident)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.class_imbalance(tf.zeros([4, 4]))) == pytest.approx(0.0, abs=1e-5)  # uniform predictions
    collapsed = 50.0 * tf.one_hot([2, 2, 2, 2], 4)
    assert float(losses.class_imbalance(collapsed)) == pytest.approx(math.log(4), abs=1e-4)


def _class_confusion_reference(logits: np.ndarray, temperature: float) -> float:
    """MCC as its authors' code computes it (Jin et al., ECCV 2020; in NumPy)."""
    scaled = logits / temperature
    predictions = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    predictions /= predictions.sum(axis=1, keepdims=True)
    weight = 1 + np.exp(-(-(predictions * np.log(predictions)).sum(axis=1)))
    weight = len(logits) * weight / weight.sum()
    confusion = (predictions * weight[:, None]).T @ predictions
    confusion = confusion / confusion.sum(axis=1)  # broadcast as in their code: column k by class k's total
    return (confusion.sum() - np.trace(confusion)) / logits.shape[1]


def test_class_confusion_matches_its_papers_code_and_is_zero_only_when_every_class_is_predicted_with_certainty():
    logits = np.random.default_rng(0).normal(0, 3, (32, 10)).astype(np.float32)
    np.testing.assert_allclose(float(losses.class_confusion(logits, 2.5)), _class_confusion_reference(logits, 2.5), rtol=1e-5)
    every_class = 20.0 * np.eye(10, dtype=np.float32)[np.arange(32) % 10]  # each example certain, every class predicted
    assert float(losses.class_confusion(every_class, 1.0)) < 1e-6
    few_classes = 20.0 * np.eye(10, dtype=np.float32)[np.arange(32) % 3]  # seven classes never predicted count as confused
    assert float(losses.class_confusion(few_classes, 1.0)) == pytest.approx(0.7, abs=1e-3)
    assert float(losses.class_confusion(np.zeros((32, 10), np.float32))) == pytest.approx(0.9)  # uniform: (C - 1) / C
