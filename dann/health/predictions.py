"""Training health without target labels: how the target predictions spread over the classes.

Logged at every evaluation (`dann.loop`), beside the domain separability of `dann.metrics`.
A collapse of target predictions onto a few classes (self-training or entropy minimisation
confirming early mistakes, or label shift) shows as a falling `target_class_entropy` and a
rising `target_largest_class_share`, with no target label read.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def prediction_health(class_logits: tf.Tensor | np.ndarray) -> dict[str, float]:
    """How predictions `(N, C)` (logits of unlabelled target examples) spread over the `C` classes.

    Returns:
        `target_prediction_entropy`: the mean entropy of each prediction, in nats (0: all confident);
        `target_class_entropy`: the entropy of the predicted-class histogram, in nats (`log C`:
        every class equally often; 0: one class only);
        `target_largest_class_share`: the share of the most often predicted class.
    """
    logits = np.asarray(class_logits, dtype=np.float64)
    log_probabilities = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    probabilities = np.exp(log_probabilities)
    mean_entropy = float(-np.sum(probabilities * log_probabilities, axis=-1).mean())
    shares = np.bincount(np.argmax(logits, axis=-1), minlength=logits.shape[-1]) / len(logits)
    present = shares[shares > 0]
    return {
        "target_prediction_entropy": mean_entropy,
        "target_class_entropy": float(-np.sum(present * np.log(present))) + 0.0,  # + 0.0: one class gives 0, not -0
        "target_largest_class_share": float(shares.max()),
    }
