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
- `target_prediction_entropy`: the mean entropy of target predictions, in nats (Morerio et al., ICLR 2018); lower is better.
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

Each is one function registered with `@validator("higher" | "lower")` in `VALIDATORS`: the
loop computes every registered one at each evaluation and `trainer.select` accepts its name.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from dann.data.domains import DomainDatasets, label_free_samples
from dann.health.predictions import prediction_health
from dann.models import AdaptationModel


@dataclass(frozen=True)
class LabelFreeEvidence:
    """What the validators read, computed once per evaluation (`label_free_evidence`); no target label among it.

    Attributes:
        model: the three networks (their features and label classifier).
        source_labels: `(N_s,)` labels of held-out source examples (the source test split).
        source_features, target_features: `(N, F)` the model's features of those source
            examples and of unlabelled target *training* examples (never the target test split).
        target_inputs: `(N_t, ...)` those normalised target inputs.
        target_logits: `(N_p, C)` the deployed classifier's logits of the first `N_p` of them.
        source_test_accuracy: the accuracy on the whole source test split.
        seed: seeds any random draw of a validator.
    """

    model: AdaptationModel
    source_labels: tf.Tensor
    source_features: tf.Tensor
    target_inputs: tf.Tensor
    target_features: tf.Tensor
    target_logits: tf.Tensor
    source_test_accuracy: float = math.nan
    seed: int = 0

    @functools.cached_property
    def target_probabilities(self) -> np.ndarray:
        """`(N_p, C)` softmax of `target_logits`, in float64 (computed once, for every validator that reads it)."""
        logits = np.asarray(self.target_logits, dtype=np.float64)
        return np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))


def label_free_evidence(
    model: AdaptationModel,
    datasets: DomainDatasets,
    classifier: keras.Model | None = None,
    source_test_accuracy: float = math.nan,
    seed: int = 0,
    max_examples: int = 2000,
    prediction_examples: int = 1000,
) -> LabelFreeEvidence:
    """`max_examples` `label_free_samples` of each domain (seeded uniform samples), `model`'s features of them, and the
    logits of `classifier` (the network that is deployed, `model` by default) for `prediction_examples` of the target ones."""
    samples = label_free_samples(datasets, max_examples)
    (source_inputs, source_labels), (target_inputs, _) = samples["source"], samples["target"]  # target labels: never read
    return LabelFreeEvidence(
        model=model,
        source_labels=source_labels,
        source_features=model.feature_extractor(source_inputs, training=False),
        target_inputs=target_inputs,
        target_features=model.feature_extractor(target_inputs, training=False),
        target_logits=(classifier or model)(target_inputs[:prediction_examples], training=False),
        source_test_accuracy=source_test_accuracy,
        seed=seed,
    )


@dataclass(frozen=True)
class Validator:
    """A label-free criterion: its score of one evaluation's evidence, and which direction is better."""

    score: Callable[[LabelFreeEvidence], float]
    prefers: str  # "higher" or "lower"

    def improves(self, value: float, best: float) -> bool:
        """Whether `value` beats `best` (`nan`: nothing yet)."""
        if math.isnan(best):
            return True
        return value > best if self.prefers == "higher" else value < best


VALIDATORS: dict[str, Validator] = {}


def validator(prefers: str) -> Callable:
    """Registers the decorated `score(evidence) -> float` as the validator named after it, preferring `"higher"` or `"lower"`.

    A registered validator is computed at every evaluation, logged to `metrics.jsonl` and
    accepted by `trainer.select`; adding one is this decorator on one function, and its test.
    """
    if prefers not in ("higher", "lower"):
        raise ValueError(f"prefers must be 'higher' or 'lower'. Received: {prefers!r}")

    def register(score: Callable[[LabelFreeEvidence], float]) -> Callable[[LabelFreeEvidence], float]:
        VALIDATORS[score.__name__] = Validator(score, prefers)
        return score

    return register


def validator_scores(evidence: LabelFreeEvidence) -> dict[str, float]:
    """Every registered validator's score of `evidence`, by name."""
    return {name: float(validator.score(evidence)) for name, validator in VALIDATORS.items()}


@validator("higher")
def source_test_accuracy(evidence: LabelFreeEvidence) -> float:
    """The accuracy on held-out labelled source data: blind to the domain shift, but a sanity floor."""
    return evidence.source_test_accuracy


@validator("lower")
def dev_risk(evidence: LabelFreeEvidence) -> float:
    """DEV's target-risk estimate (nats) from held-out source examples and unlabelled target training examples."""
    logits = tf.cast(evidence.model.label_classifier(evidence.source_features, training=False), tf.float32)
    source_losses = tf.keras.losses.sparse_categorical_crossentropy(evidence.source_labels, logits, from_logits=True).numpy()
    weights = density_ratio(evidence.source_features.numpy(), evidence.target_features.numpy(), evidence.seed)
    return float(np.sum(weights * source_losses) / np.sum(weights))


@validator("lower")
def target_prediction_entropy(evidence: LabelFreeEvidence) -> float:
    """The mean entropy of the target predictions, in nats."""
    return prediction_health(evidence.target_logits)["target_prediction_entropy"]


@validator("higher")
def information_maximization(evidence: LabelFreeEvidence) -> float:
    """`H(mean_i p_i) - mean_i H(p_i)` of the target predictions `p_i`, in nats, at most `log C`."""
    marginal = evidence.target_probabilities.mean(axis=0)
    return float(-np.sum(marginal * np.log(marginal + 1e-12)) - target_prediction_entropy(evidence))


@validator("higher")
def batch_nuclear_norm(evidence: LabelFreeEvidence) -> float:
    """The nuclear norm of the `(N, C)` target probabilities, divided by `N`."""
    probabilities = evidence.target_probabilities
    return float(np.linalg.svd(probabilities, compute_uv=False).sum() / len(probabilities))


@validator("higher")
def soft_neighborhood_density(evidence: LabelFreeEvidence) -> float:
    """SND of the target probabilities (`neighborhood_density`), in nats."""
    return neighborhood_density(evidence.target_probabilities)


@validator("higher")
def reverse_validation_accuracy(evidence: LabelFreeEvidence, ridge: float = 1.0) -> float:
    """The held-out source accuracy of a linear classifier fitted on target features labelled by the model's predictions."""
    target_logits = evidence.model.label_classifier(evidence.target_features, training=False).numpy()
    pseudo_labels = np.argmax(target_logits, axis=-1)
    target = evidence.target_features.numpy().reshape(len(pseudo_labels), -1).astype(np.float64)
    mean, std = target.mean(axis=0), target.std(axis=0) + 1e-6

    def design(points: np.ndarray) -> np.ndarray:
        return np.c_[(points.reshape(len(points), -1) - mean) / std, np.ones(len(points))]

    x = design(target)
    one_hot = np.eye(target_logits.shape[-1])[pseudo_labels]
    coefficients = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ one_hot)  # ridge least squares
    predicted = np.argmax(design(evidence.source_features.numpy().astype(np.float64)) @ coefficients, axis=-1)
    return float(np.mean(predicted == evidence.source_labels.numpy()))


SELECT_OPTIONS = ("last", *VALIDATORS)


def neighborhood_density(probabilities: np.ndarray, temperature: float = 0.05) -> float:
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
