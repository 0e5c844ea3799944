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
        `target_largest_class_share`: the share of the most often predicted class;
        `information_maximization`: `H(mean_i p_i) - mean_i H(p_i)`, in nats, and
        `batch_nuclear_norm`: the nuclear norm of the `(N, C)` probabilities divided by `N`, and
        `soft_neighborhood_density`: `soft_neighborhood_density` of the probabilities, three
        validators of `dann.selection`.
    """
    logits = np.asarray(class_logits, dtype=np.float64)
    log_probabilities = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    probabilities = np.exp(log_probabilities)
    mean_entropy = float(-np.sum(probabilities * log_probabilities, axis=-1).mean())
    marginal = probabilities.mean(axis=0)
    shares = np.bincount(np.argmax(logits, axis=-1), minlength=logits.shape[-1]) / len(logits)
    present = shares[shares > 0]
    return {
        "target_prediction_entropy": mean_entropy,
        "target_class_entropy": float(-np.sum(present * np.log(present))) + 0.0,  # + 0.0: one class gives 0, not -0
        "target_largest_class_share": float(shares.max()),
        "information_maximization": float(-np.sum(marginal * np.log(marginal + 1e-12)) - mean_entropy),
        "batch_nuclear_norm": float(np.linalg.svd(probabilities, compute_uv=False).sum() / len(probabilities)),
        "soft_neighborhood_density": soft_neighborhood_density(probabilities),
    }


def soft_neighborhood_density(probabilities: np.ndarray, temperature: float = 0.05) -> float:
    """SND (Saito et al., ICCV 2021): the mean entropy, in nats, of each example's soft neighbourhood.

    Each of the `N` rows of `probabilities` `(N, C)` is compared with the others by cosine
    similarity; a softmax over those similarities at `temperature` is its soft neighbourhood.
    High when predictions form dense clusters (many close neighbours), low when they scatter.
    """
    normalized = probabilities / np.linalg.norm(probabilities, axis=-1, keepdims=True)
    similarity = normalized @ normalized.T / temperature
    np.fill_diagonal(similarity, -np.inf)  # not its own neighbour
    log_neighbourhood = similarity - np.logaddexp.reduce(similarity, axis=-1, keepdims=True)
    neighbourhood = np.exp(log_neighbourhood)
    return float(-np.sum(neighbourhood * np.where(np.isfinite(log_neighbourhood), log_neighbourhood, 0.0), axis=-1).mean())
