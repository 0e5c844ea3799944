"""Evaluation: classification accuracy, and how well domains can be told apart.

The proxy A-distance (Ben-David et al., 2007; used in Ganin et al., JMLR 2016, section
5.2.4) is `2 (1 - 2 err)`, where `err` is the held-out error of a linear classifier
trained to tell source from target representations: 0 when they are indistinguishable,
2 when perfectly separable.
"""

from __future__ import annotations

import sys
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from dann.data.domains import DomainDatasets, test_samples
from dann.losses import domain_labels
from dann.models import DANNModel


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


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0, ridge: float = 1.0) -> float:
    """`2 (1 - 2 err)` of a linear domain classifier, fitted on one half of each set and tested on the other.

    The classifier is ridge-regularised least squares on standardised inputs with
    labels -1 (source) and +1 (target): closed form, so fast and deterministic.

    Args:
        source, target: `(N, ...)` representations (inputs or features) of each domain.
        seed: the seed of the train/test split.
        ridge: the L2 penalty, > 0.
    """
    x = np.concatenate([source, target]).reshape(len(source) + len(target), -1).astype(np.float64)
    y = 2.0 * domain_labels(len(source), len(target)).numpy().astype(np.float64) - 1.0
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[: len(x) // 2], order[len(x) // 2 :]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
    x = np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1)
    # Dual form: solves an (n_train x n_train) system, whatever the representation's width.
    gram = x[train] @ x[train].T
    weights = x[train].T @ np.linalg.solve(gram + ridge * np.eye(len(train)), y[train])
    error = float(np.mean(np.sign(x[test] @ weights) != y[test]))
    return 2.0 * (1.0 - 2.0 * min(error, 0.5))


def domain_metrics(model: DANNModel, datasets: DomainDatasets, max_examples: int = 2000, seed: int = 0) -> dict:
    """How separable the domains are on held-out test examples, in input space and in feature space.

    Returns:
        `domain_classifier_accuracy`: the trained domain classifier's accuracy on held-out
        source vs target features (0.5 = indistinguishable);
        `proxy_a_distance_inputs`: on the (normalised) inputs, i.e. before adaptation;
        `proxy_a_distance_features`: on the feature extractor's output, i.e. after.
    """
    inputs = {name: sample_inputs for name, (sample_inputs, _) in test_samples(datasets, max_examples).items()}
    features = {name: model.feature_extractor(x, training=False) for name, x in inputs.items()}
    logits = model.domain_logits(tf.concat([features["source"], features["target"]], axis=0), None, training=False)
    labels = domain_labels(len(features["source"]), len(features["target"]))
    return {
        "domain_classifier_accuracy": float(np.mean((logits.numpy()[:, 0] > 0) == (labels.numpy() > 0.5))),
        "proxy_a_distance_inputs": proxy_a_distance(inputs["source"].numpy(), inputs["target"].numpy(), seed),
        "proxy_a_distance_features": proxy_a_distance(features["source"].numpy(), features["target"].numpy(), seed),
    }
