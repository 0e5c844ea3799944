"""Source and target domains from TensorFlow Datasets, by name, with image preprocessing.

Any pair of TFDS image-classification datasets with the same classes works, e.g.
`mnist` -> `mnist_m` (the reference) or `svhn_cropped` -> `mnist`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tensorflow as tf
import tensorflow_datasets as tfds

from dann.data.domains import DomainDatasets
from dann.data.prepare import MissingDataError, dataset_builder


@dataclass(frozen=True)
class ImagePreprocessing:
    """How images become model inputs: same channels and size for both domains, then normalised.

    `prepare` runs once per example before caching (uint8 stays uint8); `normalize`
    runs per batch: `(x / 255 - mean) / std`, float32, or, with `per_image`, each image
    and channel standardised by its own mean and standard deviation (which removes a
    domain's colour cast and contrast, e.g. MNIST-M's coloured backgrounds).

    Attributes:
        image_size: `(height, width)` in pixels.
        channels: 3 (grey images are repeated) or 1 (colour images are averaged).
        mean, std: per-channel statistics of the [0, 1]-scaled images, one value each
            or one per channel; unused with `per_image`.
        per_image: standardise each image and channel by its own statistics.
    """

    image_size: tuple[int, int] = (28, 28)
    channels: int = 3
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    per_image: bool = False

    def __post_init__(self):
        # Configs hand over lists; keep the frozen dataclass hashable and comparable.
        for name in ("image_size", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={self.channels}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size must be (height, width) in pixels. Received: image_size={self.image_size}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0. Received: std={self.std}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, self.channels)

    def prepare(self, image: tf.Tensor) -> tf.Tensor:
        """`(H, W, C)` uint8 -> `(*image_size, channels)` uint8."""
        if image.shape[-1] != self.channels:
            image = tf.image.grayscale_to_rgb(image) if self.channels == 3 else tf.image.rgb_to_grayscale(image)
        if tuple(image.shape[:2]) != tuple(self.image_size):
            image = tf.image.resize(image, self.image_size, antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image

    def normalize(self, images: tf.Tensor) -> tf.Tensor:
        """`(B, H, W, C)` uint8 -> float32, standardised (see the class docstring)."""
        scaled = tf.cast(images, tf.float32) / 255.0
        if self.per_image:
            mean, variance = tf.nn.moments(scaled, axes=[1, 2], keepdims=True)
            return (scaled - mean) / tf.sqrt(variance + 1e-4)
        return (scaled - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)


@dataclass(frozen=True)
class RandomInversion:
    """Photometric augmentation of uint8 image batches: each image inverted (`255 - x`) with probability `rate`.

    Digit datasets differ in polarity (MNIST: light strokes on dark; MNIST-M, SVHN: either),
    which inversion makes the source cover.

    Attributes:
        rate: probability of inverting an image, in [0, 1].
    """

    rate: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"RandomInversion: rate must be in [0, 1]. Received: rate={self.rate}")

    def __call__(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """`(B, H, W, C)` uint8 -> the same, a random subset inverted; `seed` `(2,)` int picks which."""
        invert = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seed=seed) < self.rate
        return tf.where(invert, 255 - images, images)


def load_split(name: str, split: str, data_dir: str | None = None) -> tf.data.Dataset:
    """`(image, label)` examples of a TFDS split, preparing (and downloading) the dataset if needed.

    Args:
        name: TFDS name, with an optional config: `"mnist"`, `"mnist_m/original"`.
        split: split name, with optional TFDS slicing: `"train"`, `"test[:1000]"`.
        data_dir: the TFDS data directory; `None` follows TFDS (`TFDS_DATA_DIR`, else
            `~/tensorflow_datasets`).
    """
    return _supervised_split(dataset_builder(name, data_dir), name, split)


def _supervised_split(builder: tfds.core.DatasetBuilder, name: str, split: str) -> tf.data.Dataset:
    base_split = split.split("[")[0]
    if base_split not in builder.info.splits:
        raise MissingDataError(
            f"{name} has no split '{base_split}' in {builder.data_dir} (it has: {', '.join(builder.info.splits) or 'none'}). "
            "A split whose files were absent when the dataset was built is not generated: add them and rebuild "
            f"(delete {builder.data_dir})."
        )
    return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)


def tfds_domains(
    source: str,
    target: str,
    data_dir: str | None = None,
    preprocessing: ImagePreprocessing = ImagePreprocessing(),
    source_augmentation: Callable[[tf.Tensor], tf.Tensor] | None = None,
    source_train_split: str = "train",
    target_train_split: str = "train",
    source_test_split: str = "test",
    target_test_split: str = "test",
) -> DomainDatasets:
    """Source and target domains from TFDS names, preprocessed alike.

    Args:
        source: labelled source dataset, e.g. `"mnist"`.
        target: target dataset, e.g. `"mnist_m"`; its training labels are not used by DANN.
        data_dir: the TFDS data directory (see `load_split`).
        preprocessing: how images become inputs, the same for both domains.
        source_augmentation: applied to uint8 source training batches, e.g. `RandomInversion()`.
        source_train_split, target_train_split, source_test_split, target_test_split:
            TFDS split names, slicing allowed (`"train[:512]"`).

    Raises:
        ValueError: when the two datasets' label spaces differ.
    """
    builders = {name: dataset_builder(name, data_dir) for name in (source, target)}
    labels = {name: builder.info.features["label"] for name, builder in builders.items()}
    check_same_label_space(source, labels[source], target, labels[target])

    def split(name: str, split_name: str) -> tf.data.Dataset:
        examples = _supervised_split(builders[name], name, split_name)
        return examples.map(lambda x, y: (preprocessing.prepare(x), y), num_parallel_calls=tf.data.AUTOTUNE)

    return DomainDatasets(
        source_train=split(source, source_train_split),
        target_train=split(target, target_train_split),
        source_test=split(source, source_test_split),
        target_test=split(target, target_test_split),
        num_classes=labels[source].num_classes,
        input_shape=preprocessing.input_shape,
        normalize=preprocessing.normalize,
        augment_source=source_augmentation,
    )


def check_same_label_space(
    source: str, source_labels: tfds.features.ClassLabel, target: str, target_labels: tfds.features.ClassLabel
) -> None:
    """Raises `ValueError` unless the two datasets' `label` features name the same classes in the same order."""
    if source_labels.names != target_labels.names:
        raise ValueError(
            f"{source} and {target} have different label spaces ({source_labels.num_classes} classes "
            f"{source_labels.names[:5]}... vs {target_labels.num_classes} classes {target_labels.names[:5]}...): DANN "
            "transfers one classifier between domains that share their classes. Pick a pair with the same classes."
        )
