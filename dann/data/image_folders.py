"""Source and target domains from folders of images: one sub-folder per class, as Keras reads them.

    <domain>/<class>/<image>                      split into train and test by a seeded fraction
    <domain>/train/<class>/<image>, <domain>/test/<class>/<image>    split as given

    <target>/<image>                             an unlabelled target: images not sorted into classes

Images (PNG, JPEG, GIF, BMP) are decoded, resized to the preprocessing's size (bilinear, as
`keras.utils.image_dataset_from_directory` resizes) and then prepared like TFDS images; grey,
palette and RGBA images are converted to the preprocessing's channels. A labelled target must have
the source's class folders; its labels are read only to report its accuracy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from dann.data.domains import DomainDatasets
from dann.data.prepare import CorruptDataError, MissingDataError
from dann.data.tfds_domains import ImagePreprocessing

# What each image format's files begin with (Keras reads these four).
IMAGE_SIGNATURES = {
    ".png": (b"\x89PNG",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".gif": (b"GIF87a", b"GIF89a"),
    ".bmp": (b"BM",),
}
SPLIT_FOLDERS = ("train", "test")
UNLABELLED = -1  # the label of an unlabelled target's images


def image_folder_domains(
    source: str,
    target: str,
    preprocessing: ImagePreprocessing = ImagePreprocessing(),
    source_augmentation: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_unreadable: bool = False,
) -> DomainDatasets:
    """Labelled source images and target images from two folders (see the module docstring).

    Every image is decoded once before any training, so that an unreadable one (truncated,
    damaged, not the format its name says) is found and named up front. Each domain's file
    list is shuffled once with `seed`, so examples are never in class order.

    Args:
        source, target: the domains' folders.
        preprocessing: image size, channels and normalisation, the same for both domains.
        source_augmentation: applied to uint8 source training batches, e.g. `RandomInversion()`.
        test_fraction: the share of a domain's images held out for testing when its folder
            has no `train/` and `test/` sub-folders, in (0, 1).
        seed: the order of the images, and which ones the fraction holds out.
        skip_unreadable: leave unreadable images out (listed in the result's
            `skipped_files`) instead of refusing them.

    Raises:
        MissingDataError: a folder does not exist.
        ValueError: the domains' class folders differ, a class folder is empty, or
            `test_fraction` is out of range.
        CorruptDataError: a file in a class folder is not an image, or, unless
            `skip_unreadable`, an image cannot be decoded (the first few named, and the count).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"data.test_fraction must be in (0, 1). Received: test_fraction={test_fraction}")
    classes = check_image_folder(Path(source), "source")
    labelled = not is_unlabelled_folder(Path(target))
    target_classes = check_image_folder(Path(target), "target") if labelled else classes
    if target_classes != classes:
        raise ValueError(
            f"the source and target folders have different classes: {classes} in {source}, {target_classes} "
            f"in {target}. DANN transfers one classifier between domains that share their classes: rename or remove folders."
        )
    files = {
        domain: _split_files(Path(root), classes if domain == "source" or labelled else None, test_fraction, seed)
        for domain, root in (("source", source), ("target", target))
    }
    every_path = sorted(path for parts in files.values() for paths, _ in parts for path in paths)
    unreadable = unreadable_images(every_path, preprocessing.channels)
    if unreadable and not skip_unreadable:
        raise CorruptDataError(
            f"{len(unreadable)} image(s) cannot be read: {_first_few(unreadable)}. Remove or replace "
            "them, or pass data.skip_unreadable=true to train without them (the run lists them in skipped_files.txt)."
        )
    splits = {}
    for domain, parts in files.items():
        for name, (paths, labels) in zip(SPLIT_FOLDERS, parts):
            kept = [(path, label) for path, label in zip(paths, labels) if path not in unreadable]
            if not kept:
                raise ValueError(f"the {domain}'s {name} split has no readable image ({len(paths)} unreadable): add images.")
            splits[f"{domain}_{name}"] = _examples(kept, preprocessing)
    return DomainDatasets(
        **splits,
        num_classes=len(classes),
        input_shape=preprocessing.input_shape,
        normalize=preprocessing.normalize,
        augment_source=source_augmentation,
        splits={f"{domain}_folder": str(Path(root).resolve()) for domain, root in (("source", source), ("target", target))},
        target_labelled=labelled,
        skipped_files=unreadable,
    )


def is_unlabelled_folder(root: Path) -> bool:
    """Whether `root` holds images but no sub-folders: an unlabelled domain (its images are checked)."""
    if not root.is_dir() or _sub_folders(root):
        return False
    _check_images(root, _files(root))
    return True


def check_image_folder(root: Path, domain: str = "the") -> list[str]:
    """The class names of an image folder (sorted, as Keras orders them), after checking every file name in it.

    Raises:
        MissingDataError: `root` does not exist.
        ValueError: no class folders, an empty class folder, or `train/` and `test/` with different classes.
        CorruptDataError: a file that is not an image by its name.
    """
    if not root.is_dir():
        raise MissingDataError(f"the {domain} folder {root} does not exist (data.{domain}=...): give a folder of class folders.")
    parts = [root / name for name in SPLIT_FOLDERS] if _has_split_folders(root) else [root]
    names = [_check_classes(part) for part in parts]
    if len(names) == 2 and names[0] != names[1]:
        raise ValueError(f"{root}: train/ has the classes {names[0]} and test/ has {names[1]}; give both the same class folders.")
    return names[0]


def unreadable_images(paths: list[str], channels: int = 3) -> dict[str, str]:
    """The images among `paths` that cannot be decoded, each with the reason: `{path: reason}`, in `paths`' order.

    A file whose first bytes are not its format's, a truncated PNG or JPEG, an empty file. A
    JPEG with damaged bytes inside often still decodes (with a warning): that cannot be told
    from a valid image without a checksum, which image folders do not carry. Decodes in
    parallel: about as long as reading the images once.
    """
    wrong_start = {path: reason for path in paths if (reason := _signature_mismatch(Path(path)))}
    candidates = [path for path in paths if path not in wrong_start]
    files = tf.constant(candidates or [""])

    def decodes(index: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(tf.io.read_file(files[index]), channels=channels, expand_animations=False)
        return index + 0 * tf.cast(tf.size(image), tf.int64)  # depends on the decoded image, so it is decoded

    decoded = tf.data.Dataset.range(len(candidates)).map(decodes, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    readable = {int(index) for index in decoded.ignore_errors().as_numpy_iterator()}
    undecodable = {path: _decode_error(path, channels) for index, path in enumerate(candidates) if index not in readable}
    return {path: wrong_start.get(path) or undecodable[path] for path in paths if path in wrong_start or path in undecodable}


def _first_few(unreadable: dict[str, str], shown: int = 5) -> str:
    """`path (reason)` of the first `shown` unreadable images, `; ...` after them when there are more."""
    listed = "; ".join(f"{path} ({reason})" for path, reason in list(unreadable.items())[:shown])
    return listed + ("; ..." if len(unreadable) > shown else "")


def _decode_error(path: str, channels: int) -> str:
    try:
        tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    except tf.errors.OpError as error:
        return re.sub(r"\{\{.*?\}\}|\[Op:.*?\].*", "", error.message).strip().rstrip(".")
    return "undecodable"


def _signature_mismatch(path: Path) -> str | None:
    with open(path, "rb") as stream:
        start = stream.read(8)
    if not start.startswith(IMAGE_SIGNATURES[path.suffix.lower()]):
        return f"not a {path.suffix.lower().lstrip('.').upper()} file: it starts with {start[:4]!r}"
    return None


def _has_split_folders(root: Path) -> bool:
    return all((root / name).is_dir() for name in SPLIT_FOLDERS)


def _sub_folders(root: Path) -> list[Path]:
    return sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))


def _files(folder: Path, recursive: bool = False) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(path for path in found if path.is_file() and not path.name.startswith("."))


def _check_classes(root: Path) -> list[str]:
    folders = _sub_folders(root)
    if not folders:
        raise ValueError(f"{root} has no class folders: put each class's images in a folder named after it, {root}/<class>/<image>.")
    for folder in folders:
        _check_images(folder, _files(folder, recursive=True))
    return [folder.name for folder in folders]


def _check_images(folder: Path, files: list[Path]) -> None:
    """Raises unless `files` (of `folder`) are one or more images by their names."""
    if not files:
        raise ValueError(f"the folder {folder} holds no images: add some, or remove the folder.")
    for path in files:
        if path.suffix.lower() not in IMAGE_SIGNATURES:
            raise CorruptDataError(
                f"{path} is not an image ({', '.join(IMAGE_SIGNATURES)} files are read): remove it or replace it with the image."
            )


def image_folder_examples(folder: Path, class_names: list[str], preprocessing: ImagePreprocessing) -> tf.data.Dataset:
    """Every image of `folder`'s class folders, as prepared `(uint8 image, int64 label)` examples, class by class.

    Raises:
        CorruptDataError: an image cannot be decoded (the first few named, and the count).
    """
    paths, labels = _labelled_files(folder, class_names)
    unreadable = unreadable_images(paths, preprocessing.channels)
    if unreadable:
        raise CorruptDataError(f"{len(unreadable)} image(s) of {folder} cannot be read: {_first_few(unreadable)}. Remove or replace them.")
    return _examples(list(zip(paths, labels)), preprocessing)


def _labelled_files(folder: Path, class_names: list[str] | None) -> tuple[list[str], list[int]]:
    """The image files of `folder` and their labels: class by class (sorted), or, `class_names` `None`, unlabelled."""
    if class_names is None:
        paths = [str(path) for path in _files(folder)]
        return paths, [UNLABELLED] * len(paths)
    pairs = [(str(path), label) for label, name in enumerate(class_names) for path in _files(folder / name, recursive=True)]
    return [path for path, _ in pairs], [label for _, label in pairs]


def _split_files(
    root: Path, class_names: list[str] | None, test_fraction: float, seed: int
) -> tuple[tuple[list[str], list[int]], tuple[list[str], list[int]]]:
    """`(train, test)` files and labels of a domain folder, each shuffled with `seed`: its `train/` and `test/`, or a
    `test_fraction` held out (the last of the shuffled list, as Keras' `validation_split` holds out)."""
    if _has_split_folders(root):
        return tuple(_shuffled(*_labelled_files(root / name, class_names), seed) for name in SPLIT_FOLDERS)
    paths, labels = _shuffled(*_labelled_files(root, class_names), seed)
    held_out = max(1, int(test_fraction * len(paths)))
    return (paths[:-held_out], labels[:-held_out]), (paths[-held_out:], labels[-held_out:])


def _shuffled(paths: list[str], labels: list[int], seed: int) -> tuple[list[str], list[int]]:
    order = np.random.default_rng(seed).permutation(len(paths))
    return [paths[i] for i in order], [labels[i] for i in order]


def _examples(files: list[tuple[str, int]], preprocessing: ImagePreprocessing) -> tf.data.Dataset:
    """`(uint8 image, int64 label)` examples of `files`, in their order: decoded, resized (bilinear, as Keras does), prepared."""
    paths = tf.constant([path for path, _ in files])
    labels = tf.constant([label for _, label in files], tf.int64)

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_image(tf.io.read_file(path), channels=preprocessing.channels, expand_animations=False)
        image = tf.image.resize(image, preprocessing.image_size)
        pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return preprocessing.prepare(tf.ensure_shape(pixels, (*preprocessing.image_size, preprocessing.channels))), label

    return tf.data.Dataset.from_tensor_slices((paths, labels)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
