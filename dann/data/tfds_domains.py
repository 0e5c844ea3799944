"""Source and target domains from TensorFlow Datasets, by name, with image preprocessing.

Any pair of TFDS image-classification datasets with the same classes works, e.g.
`mnist` -> `mnist_m` (the reference) or `svhn_cropped` -> `mnist`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from dann.data.decoded_cache import cached
from dann.data.domains import DomainDatasets
from dann.data.prepare import CorruptDataError, MissingDataError, dataset_builder


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
    which inversion makes the source cover. Per channel, a grey source image becomes coloured
    with strokes light in some channels and dark in others, as a digit drawn on a photo is.

    Attributes:
        rate: probability of inverting an image (or, `per_channel`, each channel), in [0, 1].
        per_channel: draw the inversion for each channel separately.
    """

    rate: float = 0.5
    per_channel: bool = False

    def __post_init__(self):
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"RandomInversion: rate must be in [0, 1]. Received: rate={self.rate}")

    def __call__(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """`(B, H, W, C)` uint8 -> the same, a random subset inverted; `seed` `(2,)` int picks which."""
        channels = tf.shape(images)[3] if self.per_channel else 1
        invert = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, channels], seed=seed) < self.rate
        return tf.where(invert, 255 - images, images)


def load_split(name: str, split: str, data_dir: str | None = None) -> tf.data.Dataset:
    """`(image, label)` examples of a TFDS split, preparing (and downloading) the dataset if needed.

    Args:
        name: TFDS name, with an optional config: `"mnist"`, `"mnist_m/original"`.
        split: split name, with optional TFDS slicing: `"train"`, `"test[:1000]"`.
        data_dir: the TFDS data directory; `None` follows TFDS (`TFDS_DATA_DIR`, else
            `~/tensorflow_datasets`).

    Raises:
        MissingDataError: the split is not in the dataset.
        CorruptDataError: a file of the split is damaged (see `check_record_files`).
    """
    builder = dataset_builder(name, data_dir)
    examples = _supervised_split(builder, name, split)
    check_record_files(builder, name, split)
    return examples


def _supervised_split(builder: tfds.core.DatasetBuilder, name: str, split: str) -> tf.data.Dataset:
    _check_splits_exist(builder, name, split)
    return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)


def _check_splits_exist(builder: tfds.core.DatasetBuilder, name: str, spec: str) -> None:
    """Raises `MissingDataError` when a split that `spec` (`"train[:10]+test"`) reads is not in `builder`."""
    for part in spec.split("+"):
        base_split = part.split("[")[0].strip()
        if base_split not in builder.info.splits:
            raise MissingDataError(
                f"{name} has no split '{base_split}' in {builder.data_dir} (it has: {', '.join(builder.info.splits) or 'none'}). "
                "A split whose files were absent when the dataset was built is not generated: add them and rebuild "
                f"(delete {builder.data_dir})."
            )


SplitChoice = str | Sequence[str]


def tfds_domains(
    source: str,
    target: str,
    data_dir: str | None = None,
    preprocessing: ImagePreprocessing = ImagePreprocessing(),
    source_augmentation: Callable[[tf.Tensor], tf.Tensor] | None = None,
    source_train_split: SplitChoice = "train",
    target_train_split: SplitChoice = "train",
    source_test_split: SplitChoice = "test",
    target_test_split: SplitChoice = "test",
    cache_dir: str | None = None,
) -> DomainDatasets:
    """Source and target domains from TFDS names, preprocessed alike.

    Args:
        source: labelled source dataset, e.g. `"mnist"`.
        target: target dataset, e.g. `"mnist_m"`; its training labels are not used by DANN.
        data_dir: the TFDS data directory (see `load_split`).
        preprocessing: how images become inputs, the same for both domains.
        source_augmentation: applied to uint8 source training batches, e.g. `RandomInversion()`.
        source_train_split, target_train_split, source_test_split, target_test_split:
            TFDS split names, slicing allowed (`"train[:512]"`), or a list of them: the
            first that the dataset has, e.g. `["test", "train[50000:]"]` (the official
            test split when it was built, else a held-out slice of train). The choices
            made are in the result's `splits`.
        cache_dir: where the prepared splits are saved the first time and loaded from
            afterwards (`dann.data.decoded_cache`), e.g. `~/.cache/dann`; `None` decodes
            them in every run.

    Raises:
        ValueError: when the two datasets' label spaces differ, or a domain's test split
            shares examples with its training split.
        MissingDataError: when no choice of a split is in its dataset.
    """
    builders = {name: dataset_builder(name, data_dir) for name in (source, target)}
    labels = {name: builder.info.features["label"] for name, builder in builders.items()}
    check_same_label_space(source, labels[source], target, labels[target])
    splits = {
        "source_train_split": choose_split(builders[source], source, source_train_split),
        "target_train_split": choose_split(builders[target], target, target_train_split),
        "source_test_split": choose_split(builders[source], source, source_test_split),
        "target_test_split": choose_split(builders[target], target, target_test_split),
    }
    for domain, name in (("source", source), ("target", target)):
        check_disjoint(builders[name], name, splits[f"{domain}_train_split"], splits[f"{domain}_test_split"])

    def split(name: str, split_name: str) -> tf.data.Dataset:
        builder = builders[name]
        examples = _supervised_split(builder, name, split_name)
        prepared = examples.map(lambda x, y: (preprocessing.prepare(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        verify = functools.partial(check_record_files, builder, name, split_name)
        if cache_dir is None:
            verify()  # else only before the split is read to be saved: a saved split verifies itself
        return cached(prepared, cache_dir, _cache_key(builder, split_name, preprocessing), f"{name}-{split_name}", before_save=verify)

    return DomainDatasets(
        source_train=split(source, splits["source_train_split"]),
        target_train=split(target, splits["target_train_split"]),
        source_test=split(source, splits["source_test_split"]),
        target_test=split(target, splits["target_test_split"]),
        num_classes=labels[source].num_classes,
        input_shape=preprocessing.input_shape,
        normalize=preprocessing.normalize,
        augment_source=source_augmentation,
        splits=splits,
    )


def choose_split(builder: tfds.core.DatasetBuilder, name: str, choice: SplitChoice) -> str:
    """`choice` if it is one split; of a list, the first whose splits `builder` has and that holds examples.

    Raises:
        MissingDataError: when none does, or the one split `choice` selects no examples.
    """
    alternatives = [choice] if isinstance(choice, str) else list(choice)
    for spec in alternatives:
        if _num_examples(builder, spec):
            return spec
    if isinstance(choice, str):
        _check_splits_exist(builder, name, choice)
        raise MissingDataError(f"{name} split {choice!r} selects no examples ({name} has: {_split_sizes(builder)}).")
    raise MissingDataError(
        f"{name} has none of the splits {alternatives} with examples in {builder.data_dir} (it has: {_split_sizes(builder)}). "
        "A split whose files were absent when the dataset was built is not generated: add them and rebuild "
        f"(delete {builder.data_dir})."
    )


def check_disjoint(builder: tfds.core.DatasetBuilder, name: str, train_split: str, test_split: str) -> None:
    """Raises `ValueError` when the examples of `test_split` and `train_split` of `builder` overlap."""
    trained = {}
    for split, examples in _example_ranges(builder, train_split):
        trained.setdefault(split, set()).update(examples)
    shared = sum(len(trained.get(split, set()).intersection(examples)) for split, examples in _example_ranges(builder, test_split))
    if shared:
        raise ValueError(
            f"{name}: the test split {test_split!r} shares {shared} examples with the training split {train_split!r}; "
            "accuracy on examples trained on is not a test. Make them disjoint, e.g. train[:50000] and train[50000:]."
        )


def check_record_files(builder: tfds.core.DatasetBuilder, name: str, spec: str) -> None:
    """Reads the TFRecord files that split `spec` reads, without decoding them, and counts their records.

    TFDS checks downloads against their recorded checksums, but not the prepared files it
    reads: a flipped byte fails its record's CRC only when that record is read (mid-training
    for a test split), and a file cut at a record boundary reads as a shorter split, silently.
    This reads every record once (about 0.7 s per 60,000 MNIST examples on two cores).

    Raises:
        CorruptDataError: a file is unreadable, damaged or holds another number of records
            than the dataset's metadata says, naming the file and the command that rebuilds it.
    """
    rebuild = f"rm -rf {builder.data_dir} && python -m dann.data {name} --data-dir {builder.data_dir_root}"
    checked = set()
    for instruction in builder.info.splits[spec].file_instructions:
        if instruction.filename in checked:
            continue
        checked.add(instruction.filename)
        try:
            records = tf.data.TFRecordDataset(instruction.filename, buffer_size=2**22).batch(8192)
            count = int(records.reduce(tf.constant(0, tf.int64), lambda total, batch: total + tf.size(batch, tf.int64)))
        except (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.PermissionDeniedError) as error:
            found = re.search(r"(corrupted|truncated) record at \d+", error.message)
            reason = found.group(0).replace(" at ", " at byte ") if found else type(error).__name__
            raise CorruptDataError(f"{name}: {instruction.filename} is damaged ({reason}). Rebuild it: {rebuild}") from None
        if count != instruction.examples_in_shard:
            raise CorruptDataError(
                f"{name}: {instruction.filename} holds {count} records where {instruction.examples_in_shard} were written "
                f"(a cut or incomplete file). Rebuild it: {rebuild}"
            )


def _cache_key(builder: tfds.core.DatasetBuilder, split: str, preprocessing: ImagePreprocessing) -> dict:
    """What decides a prepared split's examples: the dataset's build, the split read, and `prepare`'s settings."""
    read = sorted({name for name, _ in _example_ranges(builder, split)})
    return {
        "dataset": builder.info.full_name,
        "data_dir": str(builder.data_dir),
        "split": split,
        # A rebuild from other files changes these, and so the key.
        "examples_and_bytes": {name: [builder.info.splits[name].num_examples, builder.info.splits[name].num_bytes] for name in read},
        "image_size": list(preprocessing.image_size),
        "channels": preprocessing.channels,
    }


def _num_examples(builder: tfds.core.DatasetBuilder, spec: str) -> int:
    """How many examples split `spec` selects; 0 when a split is absent or a slice lies beyond its end."""
    try:
        return sum(len(examples) for _, examples in _example_ranges(builder, spec))
    except ValueError:
        return 0


def _example_ranges(builder: tfds.core.DatasetBuilder, spec: str) -> list[tuple[str, range]]:
    """`(split, example indices)` that split `spec` reads (`"train[:10]+test"`); `ValueError` if a split is absent."""
    ranges = []
    for instruction in tfds.core.ReadInstruction.from_spec(spec).to_absolute(builder.info.splits):
        end = builder.info.splits[instruction.splitname].num_examples if instruction.to is None else instruction.to
        ranges.append((instruction.splitname, range(instruction.from_ or 0, end)))
    return ranges


def _split_sizes(builder: tfds.core.DatasetBuilder) -> str:
    return ", ".join(f"{split} ({info.num_examples} examples)" for split, info in builder.info.splits.items()) or "no splits"


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
