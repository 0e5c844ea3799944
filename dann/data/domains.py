"""A source/target pair of datasets, and the batches a training step consumes."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass
class DomainDatasets:
    """Labelled source data and target data, as unbatched `(input, label)` datasets.

    The target's training labels are never read by DANN; they are there for the
    train-on-target upper bound and for evaluation.

    Attributes:
        source_train, target_train, source_test, target_test: `tf.data.Dataset`s of
            `(input, label)` pairs, `input` float32 of `input_shape`, `label` int64.
        num_classes: the number of classes, shared by both domains.
        input_shape: the shape of one input, without the batch axis.
    """

    source_train: tf.data.Dataset
    target_train: tf.data.Dataset
    source_test: tf.data.Dataset
    target_test: tf.data.Dataset
    num_classes: int
    input_shape: tuple[int, ...]


def training_batches(datasets: DomainDatasets, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless `((source_x, source_y), target_x)` batches, each domain shuffled and repeated on its own.

    Args:
        datasets: the domains.
        batch_size: examples per domain per step (the step sees `2 * batch_size`).
        seed: shuffling seed.

    Returns:
        A dataset of `((source_x (B, ...), source_y (B,)), target_x (B, ...))`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    source = _endless(datasets.source_train, batch_size, seed)
    target = _endless(datasets.target_train, batch_size, seed + 1).map(lambda x, y: x)
    return tf.data.Dataset.zip(source, target).prefetch(tf.data.AUTOTUNE)


def evaluation_batches(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """`(input, label)` batches of a test split, in order, once."""
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _endless(dataset: tf.data.Dataset, batch_size: int, seed: int) -> tf.data.Dataset:
    return (
        dataset.cache()
        .shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
    )
