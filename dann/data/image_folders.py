"""Source and target domains from folders of images: one sub-folder per class, as Keras reads them.

    <domain>/<class>/<image>                      split into train and test by a seeded fraction
    <domain>/train/<class>/<image>, <domain>/test/<class>/<image>    split as given

    <target>/<image>                             an unlabelled target: images not sorted into classes

Images (PNG, JPEG, GIF, BMP) are read by `keras.utils.image_dataset_from_directory`, resized
to the preprocessing's size and then prepared like TFDS images. A labelled target must have
the source's class folders; its labels are read only to report its accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
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
) -> DomainDatasets:
    """Labelled source images and target images from two folders (see the module docstring).

    Args:
        source, target: the domains' folders.
        preprocessing: image size, channels and normalisation, the same for both domains.
        source_augmentation: applied to uint8 source training batches, e.g. `RandomInversion()`.
        test_fraction: the share of a domain's images held out for testing when its folder
            has no `train/` and `test/` sub-folders, in (0, 1).
        seed: which images the fraction holds out.

    Raises:
        MissingDataError: a folder does not exist.
        ValueError: the domains' class folders differ, a class folder is empty, or
            `test_fraction` is out of range.
        CorruptDataError: a file in a class folder is not an image.
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
    splits = {}
    for domain, root, names in (("source", source, classes), ("target", target, classes if labelled else None)):
        splits[f"{domain}_train"], splits[f"{domain}_test"] = _read_splits(Path(root), names, preprocessing, test_fraction, seed)
    return DomainDatasets(
        **splits,
        num_classes=len(classes),
        input_shape=preprocessing.input_shape,
        normalize=preprocessing.normalize,
        augment_source=source_augmentation,
        splits={f"{domain}_folder": str(Path(root).resolve()) for domain, root in (("source", source), ("target", target))},
        target_labelled=labelled,
    )


def is_unlabelled_folder(root: Path) -> bool:
    """Whether `root` holds images but no sub-folders: an unlabelled domain (its images are checked)."""
    if not root.is_dir() or _sub_folders(root):
        return False
    _check_images(root, [path for path in root.iterdir() if not path.name.startswith(".")])
    return True


def check_image_folder(root: Path, domain: str = "the") -> list[str]:
    """The class names of an image folder (sorted, as Keras orders them), after checking every file in it.

    Raises:
        MissingDataError: `root` does not exist.
        ValueError: no class folders, an empty class folder, or `train/` and `test/` with different classes.
        CorruptDataError: a file that is not an image, by its name or its first bytes.
    """
    if not root.is_dir():
        raise MissingDataError(f"the {domain} folder {root} does not exist (data.{domain}=...): give a folder of class folders.")
    parts = [root / name for name in SPLIT_FOLDERS] if _has_split_folders(root) else [root]
    names = [_check_classes(part) for part in parts]
    if len(names) == 2 and names[0] != names[1]:
        raise ValueError(f"{root}: train/ has the classes {names[0]} and test/ has {names[1]}; give both the same class folders.")
    return names[0]


def _has_split_folders(root: Path) -> bool:
    return all((root / name).is_dir() for name in SPLIT_FOLDERS)


def _sub_folders(root: Path) -> list[Path]:
    return sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))


def _check_classes(root: Path) -> list[str]:
    folders = _sub_folders(root)
    if not folders:
        raise ValueError(f"{root} has no class folders: put each class's images in a folder named after it, {root}/<class>/<image>.")
    for folder in folders:
        _check_images(folder, [path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".")])
    return [folder.name for folder in folders]


def _check_images(folder: Path, files: list[Path]) -> None:
    """Raises unless `files` (of `folder`) are one or more images, judged by their names and first bytes."""
    if not files:
        raise ValueError(f"the folder {folder} holds no images: add some, or remove the folder.")
    for path in files:
        signatures = IMAGE_SIGNATURES.get(path.suffix.lower())
        with open(path, "rb") as stream:
            start = stream.read(8)
        if signatures is None or not start.startswith(signatures):
            raise CorruptDataError(
                f"{path} is not an image ({', '.join(IMAGE_SIGNATURES)} files are read): remove it or replace it with the image."
            )


def image_folder_examples(folder: Path, class_names: list[str], preprocessing: ImagePreprocessing) -> tf.data.Dataset:
    """Every image of `folder`'s class folders, as prepared `(uint8 image, int64 label)` examples, in file order."""
    return _read(folder, class_names, preprocessing, shuffle=False)


def _read_splits(
    root: Path, class_names: list[str] | None, preprocessing: ImagePreprocessing, test_fraction: float, seed: int
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """`(train, test)` examples of a domain folder: its `train/` and `test/`, or a seeded `test_fraction` held out.

    `class_names` `None`: the folder's images are unlabelled; their label is -1.
    """
    if _has_split_folders(root):
        return tuple(image_folder_examples(root / name, class_names, preprocessing) for name in SPLIT_FOLDERS)
    # Keras shuffles the file list with `seed`, then holds out its last `test_fraction`.
    return _read(root, class_names, preprocessing, shuffle=True, seed=seed, validation_split=test_fraction, subset="both")


def _read(folder: Path, class_names: list[str] | None, preprocessing: ImagePreprocessing, **split) -> tf.data.Dataset | tuple:
    images = keras.utils.image_dataset_from_directory(
        folder,
        labels="inferred" if class_names else None,
        label_mode="int" if class_names else None,
        class_names=class_names,
        color_mode="rgb" if preprocessing.channels == 3 else "grayscale",
        batch_size=None,
        image_size=tuple(preprocessing.image_size),
        verbose=False,
        **split,
    )

    def prepared(image: tf.Tensor, label: tf.Tensor = UNLABELLED) -> tuple[tf.Tensor, tf.Tensor]:
        pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)  # Keras gives float32 in [0, 255]
        return preprocessing.prepare(pixels), tf.cast(label, tf.int64)

    if isinstance(images, list):  # subset="both": train and validation
        return tuple(part.map(prepared) for part in images)
    return images.map(prepared)
