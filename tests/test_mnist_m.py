"""The mnist_m TFDS builder: the synthetic recipe, the original import, and their errors."""

import shutil
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tests_support import SMALL_SPLIT, write_original_mnist_m

from dann.data import CorruptDataError, MissingDataError, load_split
from dann.data.mnist_m import BSDS500_TRAIN_DIR, blend, verify_bsds500_train


def _arrays(name, split, data_dir):
    return next(iter(tfds.as_numpy(load_split(name, split, str(data_dir)).batch(100_000))))


def test_blend_is_the_absolute_difference_with_the_binarised_digit():
    digit = np.zeros((28, 28, 1), np.uint8)
    digit[3, 4] = 255  # full ink
    digit[5, 6] = 1  # faint ink still counts as digit
    patch = np.full((28, 28, 3), [10, 200, 90], np.uint8)
    out = blend(digit, patch)
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[3, 4], [245, 55, 165])
    np.testing.assert_array_equal(out[5, 6], [245, 55, 165])
    np.testing.assert_array_equal(out[0, 0], [10, 200, 90])


def test_on_a_32x32_patch_the_digit_is_centred():
    digit = np.full((28, 28, 1), 255, np.uint8)  # ink everywhere
    patch = np.full((32, 32, 3), 10, np.uint8)
    out = blend(digit, patch)
    assert out.shape == (32, 32, 3)
    assert (out[2:30, 2:30] == 245).all()  # the digit, 2 pixels in from each side
    inside = np.zeros((32, 32), bool)
    inside[2:30, 2:30] = True
    assert (out[~inside] == 10).all()  # the background


def test_synthetic_32_follows_mnist_on_a_32x32_canvas(small_mnist_m_dir, tmp_path):
    shutil.copytree(small_mnist_m_dir / "mnist", tmp_path / "mnist")
    shutil.copytree(small_mnist_m_dir / "downloads", tmp_path / "downloads")
    config = tfds.download.DownloadConfig(max_examples_per_split=20)
    tfds.builder("mnist_m/synthetic_32", data_dir=tmp_path).download_and_prepare(download_config=config)
    images, labels = _arrays("mnist_m/synthetic_32", "test", tmp_path)
    _, mnist_labels = _arrays("mnist", "test[:20]", tmp_path)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, mnist_labels)


def test_synthetic_split_follows_mnist(small_mnist_m_dir):
    images, labels = _arrays("mnist_m", "test", small_mnist_m_dir)
    mnist_images, mnist_labels = _arrays("mnist", f"test[:{SMALL_SPLIT}]", small_mnist_m_dir)
    assert images.shape == (SMALL_SPLIT, 28, 28, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, mnist_labels)
    # Where the digit has ink the blend inverts the patch, elsewhere it is the patch: the two
    # sets of pixels come from one crop, so each image holds both a patch and its inverse.
    ink = mnist_images[..., 0] > 0
    assert ink.any(axis=(1, 2)).all()
    assert not np.array_equal(images[0], images[1])


def test_synthetic_build_is_deterministic(small_mnist_m_dir, tmp_path):
    shutil.copytree(small_mnist_m_dir / "mnist", tmp_path / "mnist")
    shutil.copytree(small_mnist_m_dir / "downloads", tmp_path / "downloads")
    tfds.builder("mnist_m", data_dir=tmp_path).download_and_prepare(download_config=tfds.download.DownloadConfig(max_examples_per_split=20))
    first, first_labels = _arrays("mnist_m", "train[:20]", small_mnist_m_dir)
    second, second_labels = _arrays("mnist_m", "train", tmp_path)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first_labels, second_labels)


def test_bsds500_photos_are_verified(offline_data_dir, tmp_path):
    photos = tmp_path / "train"
    shutil.copytree(offline_data_dir / "downloads" / "manual" / BSDS500_TRAIN_DIR, photos)
    assert len(verify_bsds500_train(photos)) == 200
    victim = sorted(photos.glob("*.jpg"))[7]
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(CorruptDataError, match=victim.name):
        verify_bsds500_train(photos)
    victim.unlink()
    with pytest.raises(MissingDataError, match="lacks 1 of the 200"):
        verify_bsds500_train(photos)


def test_offline_without_photos_says_where_to_put_them(offline_data_dir, tmp_path, monkeypatch):
    shutil.copytree(offline_data_dir / "mnist", tmp_path / "mnist")

    def offline(self, url):
        raise ConnectionError(f"cannot reach {url}")

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    with pytest.raises(MissingDataError, match=r"BSR_bsds500.tgz.*downloads/manual"):
        tfds.builder("mnist_m", data_dir=tmp_path).download_and_prepare()


# --- mnist_m/original ------------------------------------------------------------------------


def _build_original(data_dir):
    builder = tfds.builder("mnist_m/original", data_dir=data_dir)
    builder.download_and_prepare()
    return builder


def test_original_import_of_the_test_split_only(tmp_path):
    manual = tmp_path / "downloads" / "manual"
    write_original_mnist_m(manual, "test", 12)
    builder = _build_original(tmp_path)
    assert list(builder.info.splits) == ["test"]
    images, labels = _arrays("mnist_m/original", "test", tmp_path)
    assert images.shape == (12, 32, 32, 3)
    assert sorted(labels.tolist()) == sorted(i % 10 for i in range(12))
    with pytest.raises(MissingDataError, match="no split 'train'"):
        load_split("mnist_m/original", "train", str(tmp_path))


def test_original_import_from_the_archive(tmp_path):
    staging = tmp_path / "staging"
    write_original_mnist_m(staging, "train", 5)
    manual = tmp_path / "data" / "downloads" / "manual"
    manual.mkdir(parents=True)
    with tarfile.open(manual / "mnist_m.tar.gz", "w:gz") as archive:
        archive.add(staging / "mnist_m", arcname="mnist_m")
    assert list(_build_original(tmp_path / "data").info.splits) == ["train"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder, labels: labels.write_text("00000000.png 3\n00000001.png seven\n00000002.png 2\n"), r"labels.txt, line 2"),
        (  # an extra line
            lambda folder, labels: labels.write_text("00000000.png 3\n00000001.png 1\n00000002.png 2\nmissing.png 1\n"),
            r"labels.txt, line 4: missing.png is not in .*mnist_m_test",
        ),
        (  # a missing line
            lambda folder, labels: labels.write_text("00000000.png 3\n00000002.png 2\n"),
            r"labels.txt has no line for 1 of the 3 images .* 00000001.png \(line 2",
        ),
        (
            lambda folder, labels: labels.write_text("00000000.png 3\n00000001.png 1\n00000002.png 2\n00000001.png 1\n"),
            r"labels.txt, line 4: 00000001.png is listed again \(first on line 2\)",
        ),
        (lambda folder, labels: (folder / "00000001.png").write_bytes(b"not a png"), r"00000001.png .*line 2.* not a readable PNG"),
    ],
    ids=["bad label", "extra line", "missing line", "duplicate line", "corrupt png"],
)
def test_original_import_errors_name_the_file_and_line(tmp_path, damage, message):
    manual = tmp_path / "downloads" / "manual"
    folder = write_original_mnist_m(manual, "test", 3)
    damage(folder, manual / "mnist_m" / "mnist_m_test_labels.txt")
    with pytest.raises((CorruptDataError, MissingDataError), match=message):
        _build_original(tmp_path)


def test_original_without_files_says_what_to_put_where(tmp_path):
    with pytest.raises(MissingDataError, match=r"mnist_m.tar.gz .*downloads/manual"):
        _build_original(tmp_path)
