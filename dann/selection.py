"""Label-free model selection: criteria that need no target labels, and which evaluation each prefers.

In real use the target has no labels, so the target accuracy cannot pick a checkpoint.
These criteria can, computed at every evaluation interval from held-out labelled source
examples and unlabelled target *training* examples (never the target test split):

- `source_test_accuracy`: accuracy on held-out labelled source data (the source test split);
  higher is better. Blind to the domain shift, but a sanity floor.
- `dev_risk`: in the style of Deep Embedded Validation (You et al., ICML 2019). The
  held-out source cross-entropy, each example weighted by an estimate of
  `p_target(f) / p_source(f)` in feature space (a logistic domain classifier on the
  features): an estimate of the target risk in nats, lower is better. The weights are
  self-normalised (divided by their mean) instead of DEV's control variate, which, with
  domains as separable as MNIST and MNIST-M early in training, gave negative risks.
- `target_prediction_entropy` (this and the next two: `dann.health.prediction_health`): the
  mean entropy of target predictions, in nats (Morerio et al., ICLR 2018); lower is better.
- `information_maximization`: `H(mean_i p_i) - mean_i H(p_i)` of target predictions, in nats
  (Krause et al., NeurIPS 2010; as a validator, Musgrave et al., 2022): confident and spread
  over the classes; higher is better, at most `log C`.
- `batch_nuclear_norm`: the nuclear norm of the `(N, C)` matrix of target probabilities,
  divided by `N` (Cui et al., CVPR 2020): also confident and diverse; higher is better.
- `soft_neighborhood_density`: SND (Saito et al., ICCV 2021), how densely target predictions
  cluster, in nats; higher is better.
- `reverse_validation_accuracy`: reverse validation (Zhong et al., ECML PKDD 2010; the model
  selection of Ganin et al., JMLR 2016, section 5.1.2) with a linear reverse classifier: fitted
  on target features labelled by the model's own predictions, scored on held-out labelled
  source features. The paper trains a whole reverse DANN instead; a linear one on frozen
  features costs one least-squares solve per evaluation. Higher is better.

Which of them tracks target accuracy is an open question (Musgrave et al., 2022); `last` is
the default until a measured study says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from dann.data.domains import DomainDatasets, label_free_samples
from dann.models import DANNModel

# Each criterion and the direction it prefers.
CRITERIA = {
    "source_test_accuracy": "higher",
    "dev_risk": "lower",
    "target_prediction_entropy": "lower",
    "information_maximization": "higher",
    "batch_nuclear_norm": "higher",
    "soft_neighborhood_density": "higher",
    "reverse_validation_accuracy": "higher",
}
SELECT_OPTIONS = ("last", *CRITERIA)


@dataclass(frozen=True)
class LabelFreeFeatures:
    """What the label-free criteria read, computed once per evaluation (`label_free_features`).

    Attributes:
        source_labels: `(N_s,)` labels of held-out source examples (the source test split).
        source_features, target_features: `(N, F)` the model's features of those source
            examples and of unlabelled target *training* examples (never the target test split).
        target_inputs: `(N_t, ...)` the normalised target inputs, for criteria on predictions.
    """

    source_labels: tf.Tensor
    source_features: tf.Tensor
    target_inputs: tf.Tensor
    target_features: tf.Tensor


def label_free_features(model: DANNModel, datasets: DomainDatasets, max_examples: int = 2000) -> LabelFreeFeatures:
    """The first `max_examples` of `label_free_samples` in each domain, and `model`'s features of them."""
    samples = label_free_samples(datasets, max_examples)
    (source_inputs, source_labels), (target_inputs, _) = samples["source"], samples["target"]  # target labels: never read
    return LabelFreeFeatures(
        source_labels=source_labels,
        source_features=model.feature_extractor(source_inputs, training=False),
        target_inputs=target_inputs,
        target_features=model.feature_extractor(target_inputs, training=False),
    )


def dev_risk(model: DANNModel, label_free: LabelFreeFeatures, seed: int = 0) -> float:
    """DEV's target-risk estimate (nats) from held-out source examples and unlabelled target training examples."""
    logits = tf.cast(model.label_classifier(label_free.source_features, training=False), tf.float32)
    source_losses = tf.keras.losses.sparse_categorical_crossentropy(label_free.source_labels, logits, from_logits=True).numpy()
    weights = density_ratio(label_free.source_features.numpy(), label_free.target_features.numpy(), seed)
    return float(np.sum(weights * source_losses) / np.sum(weights))


def reverse_validation_accuracy(model: DANNModel, label_free: LabelFreeFeatures, ridge: float = 1.0) -> float:
    """The held-out source accuracy of a linear classifier fitted on target features labelled by the model's predictions."""
    target_logits = model.label_classifier(label_free.target_features, training=False).numpy()
    pseudo_labels = np.argmax(target_logits, axis=-1)
    target = label_free.target_features.numpy().reshape(len(pseudo_labels), -1).astype(np.float64)
    mean, std = target.mean(axis=0), target.std(axis=0) + 1e-6

    def design(points: np.ndarray) -> np.ndarray:
        return np.c_[(points.reshape(len(points), -1) - mean) / std, np.ones(len(points))]

    x = design(target)
    one_hot = np.eye(target_logits.shape[-1])[pseudo_labels]
    coefficients = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ one_hot)  # ridge least squares
    predicted = np.argmax(design(label_free.source_features.numpy().astype(np.float64)) @ coefficients, axis=-1)
    return float(np.mean(predicted == label_free.source_labels.numpy()))


def density_ratio(source: np.ndarray, target: np.ndarray, seed: int = 0, ridge: float = 1.0, components: int = 64) -> np.ndarray:
    """`p_target(x) / p_source(x)` at each source example, `(N_s,)`, from a logistic domain classifier.

    The classifier (L2-regularised, Newton's method) sees the standardised inputs'
    `components` leading principal components, which keeps it fast and well-posed for
    wide features. It is fitted on one half of each domain and applied to the other half
    of the source, and the other way round, so every weight is held out.
    """
    rng = np.random.default_rng(seed)
    source, target = source.reshape(len(source), -1).astype(np.float64), target.reshape(len(target), -1).astype(np.float64)
    source_order, target_order = rng.permutation(len(source)), rng.permutation(len(target))
    source_halves = np.array_split(source_order, 2)
    target_halves = np.array_split(target_order, 2)
    weights = np.empty(len(source))
    for fit_half, apply_half in ((0, 1), (1, 0)):
        x = np.concatenate([source[source_halves[fit_half]], target[target_halves[fit_half]]])
        y = np.concatenate([np.zeros(len(source_halves[fit_half])), np.ones(len(target_halves[fit_half]))])
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        basis = np.linalg.svd((x - mean) / std, full_matrices=False)[2][:components].T  # (features, components)

        def project(points: np.ndarray) -> np.ndarray:
            return np.c_[(points - mean) / std @ basis, np.ones(len(points))]

        coefficients = _logistic_regression(project(x), y, ridge)
        applied = project(source[source_halves[apply_half]])
        probability = np.clip(_sigmoid(applied @ coefficients), 1e-3, 1 - 1e-3)
        prior = len(source_halves[fit_half]) / len(target_halves[fit_half])
        weights[source_halves[apply_half]] = prior * probability / (1.0 - probability)
    return weights


def improves(criterion: str, value: float, best: float) -> bool:
    """Whether `value` of `criterion` beats `best` (`nan`: nothing yet)."""
    if math.isnan(best):
        return True
    return value > best if CRITERIA[criterion] == "higher" else value < best


def _logistic_regression(x: np.ndarray, y: np.ndarray, ridge: float, iterations: int = 20) -> np.ndarray:
    """Coefficients minimising the logistic loss + `ridge / 2 * |w|^2`, by Newton's method."""
    coefficients = np.zeros(x.shape[1])
    for _ in range(iterations):
        probability = _sigmoid(x @ coefficients)
        gradient = x.T @ (probability - y) + ridge * coefficients
        hessian = (x * (probability * (1 - probability))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        coefficients -= step
        if np.abs(step).max() < 1e-6:
            break
    return coefficients


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """`1 / (1 + exp(-logits))` without overflow for logits of any size (separable domains give large ones)."""
    return np.exp(-np.logaddexp(0.0, -logits))
