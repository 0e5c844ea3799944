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
