"""Evaluation: classification accuracy, and how well domains can be told apart.

The proxy A-distance (Ben-David et al., 2007; used in Ganin et al., JMLR 2016, section
5.2.4) is `2 (1 - 2 err)`, where `err` is the held-out error of a linear classifier
trained to tell source from target representations: 0 when they are indistinguishable,
2 when perfectly separable.
"""

from __future__ import annotations

import math
import sys
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from dann.data.domains import DomainDatasets, test_samples
from dann.losses import domain_labels
from dann.models import AdaptationModel


def evaluate_classifier(
    predict: Callable[[tf.Tensor], tf.Tensor], batches: tf.data.Dataset, num_classes: int, progress: bool = False
) -> dict:
    """Accuracy overall and per class.

    Args:
        predict: maps inputs `(B, ...)` to predicted class indices `(B,)`.
        batches: `(inputs, labels)` batches, iterated once.
        num_classes: the number of classes.
        progress: show a progress bar (batches, rate, ETA) when standard output is a terminal.

    Returns:
        `accuracy` (in [0, 1]), `per_class_accuracy` (a list, `None` for classes absent
        from the data), `num_examples`.
    """
    predicted, expected = [], []
    count = int(batches.cardinality())
    bar = keras.utils.Progbar(count if count > 0 else None, unit_name="batch", verbose=1 if progress and sys.stdout.isatty() else 0)
    for inputs, labels in batches:
        predicted.append(predict(inputs).numpy())
        expected.append(labels.numpy())
        bar.add(1)
    if not expected:
        raise ValueError("evaluate_classifier: the evaluation dataset is empty.")
    predicted, expected = np.concatenate(predicted), np.concatenate(expected).astype(np.int64)
    correct = predicted == expected
    per_class_total = np.bincount(expected, minlength=num_classes)
    per_class_correct = np.bincount(expected[correct], minlength=num_classes)
    return {
        "accuracy": float(correct.mean()),
        "per_class_accuracy": [float(c / t) if t else None for c, t in zip(per_class_correct, per_class_total)],
        "num_examples": int(expected.size),
    }


# The linear SVM's C, chosen on held-out data. On MNIST -> MNIST-M (2,000 test examples per domain) the
# figures were the same without C = 1 and 10, which took 8x the time (100 s instead of 13 at the end of each run).
PAD_REGULARISATION = (0.001, 0.01, 0.1)
PAD_SVM_MIN_EXAMPLES = 8  # per domain: C is chosen on a quarter of half the examples


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0, classifier: str = "ridge") -> float:
    """`2 (1 - 2 err)` of a linear domain classifier, fitted on one half of each set and tested on the other.

    Args:
        source, target: `(N, ...)` representations (inputs or features) of each domain.
        seed: the seed of the train/test split.
        classifier: `"ridge"`: ridge-regularised least squares (penalty 1) on standardised
            inputs with labels -1 and +1, closed form, so fast and deterministic (the health
            figures use it); `"linear_svm"`: scikit-learn's linear SVM, its `C` chosen among
            `PAD_REGULARISATION` on a quarter of the training half, as published figures are
            computed (Ben-David et al., 2007; Ganin et al., 2016). Needs scikit-learn; NaN
            when a domain has fewer than `PAD_SVM_MIN_EXAMPLES` examples, too few to choose `C`.
    """
    if classifier not in ("ridge", "linear_svm"):
        raise ValueError(f"proxy_a_distance: classifier must be 'ridge' or 'linear_svm'. Received: classifier={classifier!r}")
    if classifier == "linear_svm" and min(len(source), len(target)) < PAD_SVM_MIN_EXAMPLES:
        return math.nan
    x = np.concatenate([source, target]).reshape(len(source) + len(target), -1).astype(np.float64)
    y = 2.0 * domain_labels(len(source), len(target)).numpy().astype(np.float64) - 1.0
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[: len(x) // 2], order[len(x) // 2 :]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
    x = (x - mean) / std
    predictions = _linear_svm_predictions if classifier == "linear_svm" else _ridge_predictions
    predicted = predictions(x[train], y[train], x[test])
    error = float(np.mean(predicted != y[test]))
    return 2.0 * (1.0 - 2.0 * min(error, 0.5))


def _ridge_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    x_train, x_test = (np.concatenate([x, np.ones((len(x), 1))], axis=1) for x in (x_train, x_test))
    # Dual form: solves an (n_train x n_train) system, whatever the representation's width.
    weights = x_train.T @ np.linalg.solve(x_train @ x_train.T + ridge * np.eye(len(x_train)), y_train)
    return np.sign(x_test @ weights)


def _linear_svm_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    from sklearn.svm import LinearSVC  # the plot extra; imported here so that the closed form needs no scikit-learn

    fit, held_out = slice(len(x_train) // 4, None), slice(None, len(x_train) // 4)

    def svm(c: float) -> LinearSVC:
        return LinearSVC(C=c, dual="auto", max_iter=10_000, random_state=0)

    scores = [svm(c).fit(x_train[fit], y_train[fit]).score(x_train[held_out], y_train[held_out]) for c in PAD_REGULARISATION]
    best = PAD_REGULARISATION[int(np.argmax(scores))]
    return svm(best).fit(x_train, y_train).predict(x_test)


def domain_metrics(
    model: AdaptationModel, datasets: DomainDatasets, max_examples: int = 2000, seed: int = 0, pad_classifiers: tuple[str, ...] = ("ridge",)
) -> dict:
    """How separable the domains are on held-out test examples, in input space and in feature space.

    Args:
        pad_classifiers: the `proxy_a_distance` classifiers to measure with.

    Returns:
        `domain_classifier_accuracy`: the trained domain classifier's accuracy on held-out
        source vs target features (0.5 = indistinguishable);
        `proxy_a_distance_inputs`: on the (normalised) inputs, i.e. before adaptation;
        `proxy_a_distance_features`: on the feature extractor's output, i.e. after; both
        with the ridge classifier, and with the linear SVM as `..._linear_svm` when asked.
    """
    inputs = {name: sample_inputs for name, (sample_inputs, _) in test_samples(datasets, max_examples).items()}
    features = {name: model.feature_extractor(x, training=False) for name, x in inputs.items()}
    logits = model.domain_logits(tf.concat([features["source"], features["target"]], axis=0), None, training=False)
    labels = domain_labels(len(features["source"]), len(features["target"]))
    figures = {"domain_classifier_accuracy": float(np.mean((logits.numpy()[:, 0] > 0) == (labels.numpy() > 0.5)))}
    for classifier in pad_classifiers:
        suffix = "" if classifier == "ridge" else f"_{classifier}"
        for name, samples in (("inputs", inputs), ("features", features)):
            pad = proxy_a_distance(samples["source"].numpy(), samples["target"].numpy(), seed, classifier)
            figures[f"proxy_a_distance_{name}{suffix}"] = pad
    return figures
