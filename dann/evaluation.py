"""Accuracy of a trained classifier on a labelled dataset."""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf


def accuracy(predict: Callable[[tf.Tensor], tf.Tensor], batches: tf.data.Dataset) -> float:
    """Fraction of correctly classified examples, in [0, 1].

    Args:
        predict: maps inputs `(B, ...)` to predicted class indices `(B,)`.
        batches: `(inputs, labels)` batches, iterated once.
    """
    correct = total = 0
    for inputs, labels in batches:
        correct += int(tf.reduce_sum(tf.cast(tf.equal(predict(inputs), tf.cast(labels, tf.int64)), tf.int64)))
        total += int(tf.shape(labels)[0])
    if total == 0:
        raise ValueError("accuracy: the evaluation dataset is empty.")
    return correct / total
