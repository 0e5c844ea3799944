"""A source/target pair of datasets, and the batches a training step consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from dann.data.prepare import CorruptDataError

Normalizer = Callable[[tf.Tensor], tf.Tensor]
Augmentation = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


@dataclass
class DomainDatasets:
    """Labelled source data and target data, as unbatched `(input, label)` datasets.

    The target's training labels are never read by DANN; they are there for the
    train-on-target upper bound and for evaluation.

    Attributes:
        source_train, target_train, source_test, target_test: `tf.data.Dataset`s of
            `(input, label)` pairs, `input` of `input_shape`, `label` int64.
        num_classes: the number of classes, shared by both domains.
        input_shape: the shape of one input, without the batch axis.
        normalize: applied to each batch of inputs, `(B, *input_shape)` -> float32;
            `None` when the inputs are float32 already. Doing it per batch keeps the
            cached examples compact (uint8 images) and the work vectorised.
        augment_source: `augment_source(inputs, seed)` is applied to each training batch
            of source inputs before `normalize` (e.g. `RandomInversion`), never to target
            or test batches; `seed` is a `(2,)` int64 seed for stateless random ops, drawn
            from the shuffling seed, so augmentation is reproducible and the pipeline's
            position can be checkpointed.
        splits: which split each part was read from, for the run's results, e.g.
            `{"target_test_split": "train[50000:]"}`; empty when the data has no named splits.
        target_labelled: whether the target's labels are known; when not (label -1),
            the target accuracy is not reported.
        skipped_files: input files left out because they cannot be read, with the reason,
            `{path: reason}` (image folders with `skip_unreadable`); the run lists them.
        drawn_samples: the samples of `test_samples` and `label_free_samples` drawn so far,
            kept so that every evaluation reads the same ones without reading a split again.
    """

    source_train: tf.data.Dataset
    target_train: tf.data.Dataset
    source_test: tf.data.Dataset
    target_test: tf.data.Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    normalize: Normalizer | None = None
    augment_source: Augmentation | None = None
    splits: dict[str, str] = field(default_factory=dict)
    target_labelled: bool = True
    skipped_files: dict[str, str] = field(default_factory=dict)
    drawn_samples: dict = field(default_factory=dict, init=False, repr=False, compare=False)


def check_finite_inputs(datasets: DomainDatasets) -> None:
    """Raises `CorruptDataError` when a split's floating-point inputs hold NaN or infinity, naming the split and examples.

    Integer inputs (uint8 images) cannot; float inputs (arrays handed to the library) are
    read once. A NaN input would otherwise become a NaN loss, or a silently wrong accuracy.
    """
    for name in ("source_train", "target_train", "source_test", "target_test"):
        split = getattr(datasets, name)
        if not split.element_spec[0].dtype.is_floating:
            continue
        not_finite = split.enumerate().filter(lambda _, example: tf.logical_not(tf.reduce_all(tf.math.is_finite(example[0]))))
        indices = [int(index) for index, _ in not_finite.as_numpy_iterator()]
        if indices:
            raise CorruptDataError(
                f"{name}: {len(indices)} example(s) have NaN or infinite inputs, e.g. example {indices[0]}: "
                "drop or repair them before training."
            )


def training_batches(datasets: DomainDatasets, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless `((source_x, source_y), target_x)` batches, each domain shuffled and repeated on its own.

    Args:
        datasets: the domains.
        batch_size: examples per domain per step (the step sees `2 * batch_size`).
        seed: shuffling seed.

    Returns:
        A dataset of `((source_x (B, ...), source_y (B,)), target_x (B, ...))`, float32 inputs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    source = _endless(datasets.source_train, batch_size, seed)
    if datasets.augment_source is not None:
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        source = tf.data.Dataset.zip(source, seeds).map(lambda batch, pair: (datasets.augment_source(batch[0], pair), batch[1]))
    source = _normalized(source, datasets.normalize)
    target = _normalized(_endless(datasets.target_train, batch_size, seed + 1), datasets.normalize).map(lambda x, y: x)
    return tf.data.Dataset.zip(source, target).prefetch(tf.data.AUTOTUNE)


def stacked_calls(batches: tf.data.Dataset, lengths: Sequence[int]) -> tf.data.Dataset:
    """Consecutive batches stacked into one element per compiled call: element `i` stacks `lengths[i]` batches.

    Args:
        batches: endless batches, e.g. of `training_batches`.
        lengths: batches per call, in order; after the last, calls of `lengths[-1]` follow.

    Returns:
        The same structure with a leading axis, `(lengths[i], B, ...)`; a checkpointed
        iterator resumes at the call where it stopped.
    """
    ends = tf.constant(np.cumsum(lengths), tf.int64)
    sizes = tf.constant([*lengths, lengths[-1]], tf.int64)

    def call_index(position: tf.Tensor, batch) -> tf.Tensor:
        return tf.minimum(tf.searchsorted(ends, [position], side="right", out_type=tf.int64)[0], len(lengths))

    return batches.enumerate().group_by_window(
        key_func=call_index,
        reduce_func=lambda index, window: window.map(lambda position, batch: batch).batch(sizes[index]),
        window_size_func=lambda index: sizes[index],
    )


def evaluation_batches(dataset: tf.data.Dataset, batch_size: int, normalize: Normalizer | None = None) -> tf.data.Dataset:
    """`(input, label)` batches of a test split, in order, once, normalised like training batches."""
    return _normalized(dataset.batch(batch_size), normalize).prefetch(tf.data.AUTOTUNE)


def test_samples(datasets: DomainDatasets, max_examples: int, seed: int = 0) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
    """`representative_sample`s of each domain's test split, normalised: `{"source"|"target": (inputs, labels)}`."""
    return _samples(datasets, {"source": datasets.source_test, "target": datasets.target_test}, max_examples, seed)


def label_free_samples(datasets: DomainDatasets, max_examples: int, seed: int = 0) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
    """What label-free selection and health may read: held-out labelled source (the source test split) and
    unlabelled target training examples (their labels must not be read), a `representative_sample` of each, normalised.

    Never the target test split, which stays for reporting only.
    """
    return _samples(datasets, {"source": datasets.source_test, "target": datasets.target_train}, max_examples, seed)


def representative_sample(dataset: tf.data.Dataset, max_examples: int, seed: int = 0) -> tf.data.Dataset:
    """`max_examples` of `dataset`'s examples drawn uniformly without replacement (all of them if it has fewer), in random order.

    Whatever the order on disk (image folders read class by class), the sample stands for the
    whole split, and so does any prefix of it. The same `seed` draws the same examples, so
    runs are scored on the same sample. Reads `dataset` once.
    """
    count = int(dataset.cardinality())
    if count == tf.data.INFINITE_CARDINALITY:
        raise ValueError("representative_sample: the dataset is endless; give a finite split.")
    if count < 0:
        count = int(dataset.reduce(tf.constant(0, tf.int64), lambda total, _: total + 1))
    size = min(max_examples, count)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(count, bool)
    chosen[rng.choice(count, size, replace=False)] = True
    in_memory = _in_memory(dataset)
    if in_memory is None:
        mask = tf.constant(chosen)
        picked = dataset.enumerate().filter(lambda index, _: mask[index]).map(lambda _, example: example)
        # `filter` keeps the dataset's order: shuffle it, seeded, so a prefix is uniform too.
        return picked.shuffle(max(1, size), seed=seed)
    # The same sample in the same order, by one gather instead of a per-example filter: a seeded `shuffle`
    # of `size` elements orders them by the seed and the size alone.
    order = next(iter(tf.data.Dataset.range(size).shuffle(max(1, size), seed=seed).batch(max(1, size))))
    positions = tf.gather(np.flatnonzero(chosen), order)
    return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(part, positions) for part in in_memory))


def _samples(datasets: DomainDatasets, splits: dict[str, tf.data.Dataset], max_examples: int, seed: int) -> dict:
    """Normalised `representative_sample`s, drawn once per `datasets` and kept (each draw reads its whole split)."""
    drawn = {}
    for domain, split in splits.items():
        key = (id(split), max_examples, seed)
        if key not in datasets.drawn_samples:
            sample = representative_sample(split, max_examples, seed)
            datasets.drawn_samples[key] = next(iter(evaluation_batches(sample, max_examples, datasets.normalize)))
        drawn[domain] = datasets.drawn_samples[key]
    return drawn


def _endless(dataset: tf.data.Dataset, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled, repeated batches: gathered from tensors in memory when the split fits, else streamed."""
    in_memory = _in_memory(dataset)
    if in_memory is None:
        return dataset.cache().shuffle(10_000, seed=seed).repeat().batch(batch_size, drop_remainder=True)
    inputs, labels = in_memory
    # One vectorised gather per batch instead of per-example tf.data work: the pipeline
    # then costs little of the two or so cores that the training step also needs.
    indices = tf.data.Dataset.range(labels.shape[0]).shuffle(labels.shape[0], seed=seed).repeat()
    return indices.batch(batch_size, drop_remainder=True).map(lambda i: (tf.gather(inputs, i), tf.gather(labels, i)))


def _in_memory(dataset: tf.data.Dataset, max_bytes: int = 2**31) -> tuple[tf.Tensor, tf.Tensor] | None:
    """The whole `(input, label)` dataset as two tensors, or `None` if its size is unknown or above `max_bytes`."""
    count = int(dataset.cardinality())
    input_spec = dataset.element_spec[0]
    if count < 1 or not input_spec.shape.is_fully_defined():
        return None
    if count * input_spec.shape.num_elements() * input_spec.dtype.size > max_bytes:
        return None
    return next(iter(dataset.batch(count)))


def _normalized(batches: tf.data.Dataset, normalize: Normalizer | None) -> tf.data.Dataset:
    if normalize is None:
        return batches
    return batches.map(lambda x, y: (normalize(x), y), num_parallel_calls=tf.data.AUTOTUNE)
