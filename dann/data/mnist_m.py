"""MNIST-M as a TensorFlow Datasets builder, registered as `mnist_m` when `dann.data` is imported.

Two builder configs:

* `mnist_m/synthetic` (default): made here by the recipe of Ganin et al. (JMLR 2016,
  section 5.2.2): each MNIST digit is binarised and difference-blended with a random
  28x28 crop of a random BSDS500 training photo, `|patch - digit|` per channel. The
  splits follow MNIST's (60,000 / 10,000 examples, same labels, same order), and the
  build is seeded: two builds give identical examples.
* `mnist_m/synthetic_32`: the same recipe on the original distribution's 32x32 canvas: the
  28x28 digit centred on a 32x32 crop, so that, resized to 28x28 for the network as the
  original images are, the digit is as small and the background as smooth as there.
* `mnist_m/original`: the MNIST-M distribution as people download it (`mnist_m.tar.gz`,
  or its extracted `mnist_m/` folder, 32x32 RGB PNGs) imported from the manual
  directory. A split whose files are absent is not generated.

Inputs are looked for first in the TFDS data directory (prepared `mnist`) and its manual
directory `<data_dir>/downloads/manual/`; what is missing is downloaded from its
canonical source (MNIST through TFDS, BSDS500 from Berkeley), and offline the build
stops saying which file to put where.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from dann.data.prepare import CorruptDataError, MissingDataError, dataset_builder

BSDS500_URL = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
BSDS500_ARCHIVE = "BSR_bsds500.tgz"
BSDS500_TRAIN_DIR = Path("BSR", "BSDS500", "data", "images", "train")
BSDS500_TRAIN_MANIFEST = Path(__file__).with_name("bsds500_train.sha256")
ORIGINAL_ARCHIVE = "mnist_m.tar.gz"
ORIGINAL_SPLITS = {"train": "mnist_m_train", "test": "mnist_m_test"}
SYNTHETIC_SEED = 20160101


def binarize_digit(digit: np.ndarray) -> np.ndarray:
    """`(28, 28[, 1])` uint8 MNIST digit -> `(28, 28, 3)` float32: 255 where the digit is, else 0."""
    mask = np.reshape(digit, (digit.shape[0], digit.shape[1], 1)) > 0
    return np.repeat(mask, 3, axis=2).astype(np.float32) * 255.0


def blend(digit: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """The MNIST-M difference blend: `|patch - binarised digit|` per channel, as uint8 `(S, S, 3)`.

    Args:
        digit: `(28, 28[, 1])` uint8 MNIST digit, centred on the patch when `S` > 28.
        patch: `(S, S, 3)` uint8 crop of a background photo, `S` >= 28.
    """
    ink = binarize_digit(digit)
    (top, bottom), (left, right) = (_centred_margins(outer, inner) for outer, inner in zip(patch.shape[:2], ink.shape[:2]))
    ink = np.pad(ink, [(top, bottom), (left, right), (0, 0)])
    return np.abs(patch.astype(np.float32) - ink).astype(np.uint8)


def _centred_margins(outer: int, inner: int) -> tuple[int, int]:
    """The margins before and after a length `inner` centred in `outer`."""
    before = (outer - inner) // 2
    return before, outer - inner - before


class MnistMConfig(tfds.core.BuilderConfig):
    """A `mnist_m` builder config; `image_size` is the side of the square RGB images, in pixels."""

    def __init__(self, *, image_size: int, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size


class MnistM(tfds.core.GeneratorBasedBuilder):
    """MNIST-M: MNIST digits blended over colour photo patches (Ganin et al., JMLR 2016)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Synthetic (recipe of Ganin et al.; 28x28, or 32x32 as the original) and original (manual import) configs."}
    BUILDER_CONFIGS = [
        MnistMConfig(
            name="synthetic",
            image_size=28,
            description="Made from TFDS mnist and the 200 BSDS500 training photos, seeded.",
        ),
        MnistMConfig(
            name="synthetic_32",
            image_size=32,
            description="The synthetic recipe on a 32x32 canvas (the digit centred), as the original images are.",
        ),
        MnistMConfig(
            name="original",
            image_size=32,
            description="The original MNIST-M distribution (32x32 PNGs), from the manual directory.",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    mnist_m/synthetic: BSDS500 is downloaded from {BSDS500_URL}; offline, place
      `{BSDS500_ARCHIVE}` or its extracted `{BSDS500_TRAIN_DIR}/*.jpg` in the manual directory.
    mnist_m/original: place `{ORIGINAL_ARCHIVE}` or its extracted `mnist_m/` folder
      (`mnist_m_train/`, `mnist_m_test/`, `mnist_m_train_labels.txt`,
      `mnist_m_test_labels.txt`) in the manual directory.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        side = self.builder_config.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(side, side, 3)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            # Written in generation order, so that example i is MNIST's example i (as TFDS reads MNIST).
            disable_shuffling=True,
            homepage="https://jmlr.org/papers/v17/15-239.html",
            citation="""@article{ganin2016domain,
  title={Domain-Adversarial Training of Neural Networks},
  author={Ganin, Yaroslav and Ustinova, Evgeniya and Ajakan, Hana and Germain, Pascal and
          Larochelle, Hugo and Laviolette, Fran{\\c{c}}ois and Marchand, Mario and Lempitsky, Victor},
  journal={Journal of Machine Learning Research}, volume={17}, number={59}, pages={1--35}, year={2016}}""",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        if self.builder_config.name.startswith("synthetic"):
            photos = _bsds500_train_photos(dl_manager)
            return {split: self._generate_examples(split=split, photo_paths=photos) for split in ("train", "test")}
        root = _original_root(dl_manager)
        return {
            split: self._generate_examples(image_dir=root / folder, labels_path=root / f"{folder}_labels.txt")
            for split, folder in ORIGINAL_SPLITS.items()
            if (root / folder).is_dir() or (root / f"{folder}_labels.txt").exists()
        }

    def _generate_examples(self, **inputs) -> Iterator:
        if self.builder_config.name.startswith("synthetic"):
            return self._generate_synthetic(**inputs)
        return self._generate_original(**inputs)

    def _generate_synthetic(self, split: str, photo_paths: list[Path]) -> Iterator:
        digits, labels = _mnist_split(split, self.data_dir_root)
        photos = [_decode_jpeg(path) for path in photo_paths]
        rng = np.random.default_rng([SYNTHETIC_SEED, ("train", "test").index(split)])
        side = self.builder_config.image_size
        for index, (digit, label) in enumerate(zip(digits, labels)):
            photo = photos[rng.integers(len(photos))]
            top = rng.integers(photo.shape[0] - side + 1)
            left = rng.integers(photo.shape[1] - side + 1)
            patch = photo[top : top + side, left : left + side]
            yield index, {"image": blend(digit, patch), "label": int(label)}

    def _generate_original(self, image_dir: Path, labels_path: Path) -> Iterator:
        side = self.builder_config.image_size
        for line_number, name, label in read_labels(labels_path, image_dir):
            image_path = image_dir / name
            try:
                image = tf.io.decode_png(image_path.read_bytes(), channels=3).numpy()
            except tf.errors.InvalidArgumentError as error:
                raise CorruptDataError(
                    f"{image_path} (listed in {labels_path}, line {line_number}) is not a readable PNG: {error.message}"
                ) from None
            if image.shape[:2] != (side, side):
                raise CorruptDataError(f"{image_path}: expected {side}x{side} pixels, got {image.shape[1]}x{image.shape[0]}.")
            yield name, {"image": image, "label": label}


def read_labels(labels_path: Path, image_dir: Path) -> list[tuple[int, str, int]]:
    """`(line number, file name, label)` of each line of an MNIST-M labels file, checked against `image_dir`'s PNGs.

    Checked before any image is decoded: every line is `<file name> <label 0-9>`, names no file
    twice and no file absent from `image_dir`, and every PNG there has a line.

    Raises:
        MissingDataError: when the labels file is absent.
        CorruptDataError: naming the file and line at fault.
    """
    if not labels_path.exists():
        raise MissingDataError(f"{labels_path} is missing: the images in {image_dir} have no labels.")
    images = sorted(path.name for path in image_dir.glob("*.png")) if image_dir.is_dir() else []
    on_disk, listed, entries = set(images), {}, []
    for line_number, line in enumerate(labels_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit() or not 0 <= int(fields[1]) <= 9:
            raise CorruptDataError(f"{labels_path}, line {line_number}: expected '<file name> <label 0-9>', got {line!r}.")
        name = fields[0]
        if name in listed:
            raise CorruptDataError(f"{labels_path}, line {line_number}: {name} is listed again (first on line {listed[name]}).")
        if name not in on_disk:
            raise MissingDataError(
                f"{labels_path}, line {line_number}: {name} is not in {image_dir}; the line is extra or the image is missing."
            )
        listed[name] = line_number
        entries.append((line_number, name, int(fields[1])))
    unlabelled = [name for name in images if name not in listed]
    if unlabelled:
        expected_line = images.index(unlabelled[0]) + 1
        raise CorruptDataError(
            f"{labels_path} has no line for {len(unlabelled)} of the {len(images)} images in {image_dir}, the first "
            f"{unlabelled[0]} (line {expected_line} in file-name order): the labels file is incomplete."
        )
    return entries


def _mnist_split(split: str, data_dir: os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images `(N, 28, 28, 1)` uint8 and labels `(N,)`, prepared by TFDS (downloaded if missing)."""
    builder = dataset_builder("mnist", data_dir)
    images, labels = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
    return images, labels


def _bsds500_train_photos(dl_manager: tfds.download.DownloadManager) -> list[Path]:
    """The 200 BSDS500 training photos: extracted, archived, or downloaded; verified against the manifest."""
    manual_dir = _manual_dir(dl_manager)
    archive = manual_dir / BSDS500_ARCHIVE
    if (manual_dir / BSDS500_TRAIN_DIR).is_dir():
        root = manual_dir
    elif archive.exists():
        root = Path(dl_manager.extract(archive))
    else:
        try:
            root = Path(dl_manager.download_and_extract(BSDS500_URL))
        except Exception as error:  # offline: TFDS raises various network errors
            raise MissingDataError(
                f"mnist_m/synthetic needs the BSDS500 training photos. Download {BSDS500_URL} and put "
                f"{BSDS500_ARCHIVE} in {manual_dir}, or extract it there so that "
                f"{manual_dir / BSDS500_TRAIN_DIR}/*.jpg exist. (Download failed: {type(error).__name__}.)"
            ) from None
    if not (root / BSDS500_TRAIN_DIR).is_dir():
        raise MissingDataError(f"{BSDS500_TRAIN_DIR} is not in {root}: is it the extracted BSDS500 archive?")
    return verify_bsds500_train(root / BSDS500_TRAIN_DIR)


def verify_bsds500_train(photo_dir: Path) -> list[Path]:
    """The photos of `photo_dir`, sorted, after checking each against the published archive's SHA-256 manifest."""
    expected = dict(line.split()[::-1] for line in BSDS500_TRAIN_MANIFEST.read_text().splitlines() if line.strip())
    missing = sorted(set(expected) - {path.name for path in photo_dir.glob("*.jpg")})
    if missing:
        raise MissingDataError(
            f"{photo_dir} lacks {len(missing)} of the 200 BSDS500 training photos (e.g. {missing[0]}); re-extract {BSDS500_ARCHIVE} there."
        )
    for name, digest in sorted(expected.items()):
        if hashlib.sha256((photo_dir / name).read_bytes()).hexdigest() != digest:
            raise CorruptDataError(
                f"{photo_dir / name} differs from the BSDS500 original (SHA-256 mismatch); re-extract {BSDS500_ARCHIVE}."
            )
    return [photo_dir / name for name in sorted(expected)]


def _original_root(dl_manager: tfds.download.DownloadManager) -> Path:
    """The extracted `mnist_m/` folder of the original distribution, from the manual directory."""
    manual_dir = _manual_dir(dl_manager)
    if (manual_dir / "mnist_m").is_dir():
        return manual_dir / "mnist_m"
    archive = manual_dir / ORIGINAL_ARCHIVE
    if archive.exists():
        if not tarfile.is_tarfile(archive):
            raise CorruptDataError(f"{archive} is not a readable tar.gz archive; download it again.")
        return Path(dl_manager.extract(archive)) / "mnist_m"
    raise MissingDataError(
        f"mnist_m/original is imported, not downloaded: put {ORIGINAL_ARCHIVE} or its extracted mnist_m/ folder in {manual_dir}."
    )


def _manual_dir(dl_manager: tfds.download.DownloadManager) -> Path:
    # The public `manual_dir` raises when the folder is absent or empty; we want the
    # path to look in, or to name in the error message.
    return Path(dl_manager._manual_dir)  # noqa: SLF001


def _decode_jpeg(path: Path) -> np.ndarray:
    try:
        return tf.io.decode_jpeg(path.read_bytes(), channels=3).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise CorruptDataError(f"{path} is not a readable JPEG: {error.message}") from None
