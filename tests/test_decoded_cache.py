"""The decoded-example cache: saved once, loaded after, keyed by what decides the examples, never half-written."""

import errno
import os
import shutil
import time
import warnings

import numpy as np
import pytest
import tensorflow as tf

from dann.data import CorruptDataError, ImagePreprocessing, tfds_domains
from dann.data.decoded_cache import _save_in_parts, cached


def _numbers(count: int, scale: int = 1) -> tf.data.Dataset:
    return tf.data.Dataset.range(count).map(lambda i: (tf.fill([2, 2], i * scale), i))


def _elements(dataset: tf.data.Dataset) -> list:
    return [(x.tolist(), int(y)) for x, y in dataset.as_numpy_iterator()]


def test_a_saved_dataset_is_loaded_in_order_instead_of_recomputed(tmp_path):
    first = cached(_numbers(50), tmp_path, {"split": "train"}, "numbers/train")
    assert _elements(first) == _elements(_numbers(50)) and int(first.cardinality()) == 50
    # The same key with another dataset reads what was saved: the dataset is not computed again.
    again = cached(_numbers(50, scale=7), tmp_path, {"split": "train"}, "numbers/train")
    assert _elements(again) == _elements(_numbers(50))
    other_key = cached(_numbers(3, scale=7), tmp_path, {"split": "test"}, "numbers/train")
    assert _elements(other_key) == _elements(_numbers(3, scale=7))
    entries = sorted(path.name for path in tmp_path.iterdir())
    assert len(entries) == 2 and all(name.startswith("numbers_train-") and ".partial" not in name for name in entries)


def test_a_dataset_saved_in_many_parts_keeps_its_order(tmp_path):
    (tmp_path / "entry").mkdir()
    assert _save_in_parts(_numbers(50), tmp_path / "entry", part_bytes=10 * 40) == 50  # 10 elements of 4 + 1 int64s per part
    parts = sorted(path for path in (tmp_path / "entry").iterdir() if path.is_dir())
    assert len(parts) == 5
    loaded = [tf.data.Dataset.load(str(part)) for part in parts]
    assert [int(y) for dataset in loaded for _, y in dataset] == list(range(50))


def test_an_input_error_raises_and_leaves_no_entry(tmp_path):
    def broken(i):
        tf.debugging.assert_less(i, tf.constant(5, tf.int64), message="interrupted")
        return i

    with pytest.raises(tf.errors.InvalidArgumentError, match="interrupted"):
        cached(tf.data.Dataset.range(10).map(broken), tmp_path, {"split": "train"}, "numbers")
    # It raised instead of hanging (TensorFlow issue 61736), and left nothing behind, not even the
    # partial directory; the next run saves the entry afresh.
    assert list(tmp_path.iterdir()) == []
    assert [int(i) for i in cached(tf.data.Dataset.range(10), tmp_path, {"split": "train"}, "numbers")] == list(range(10))


def test_partial_saves_abandoned_an_hour_ago_are_deleted_and_running_ones_kept(tmp_path):
    cached(tf.data.Dataset.range(3), tmp_path, {"split": "train"}, "numbers")  # to learn the entry's name
    (entry,) = tmp_path.iterdir()
    abandoned, running = tmp_path / f"{entry.name}.partial-old", tmp_path / f"{entry.name}.partial-new"
    for partial in (abandoned, running):
        partial.mkdir()
    os.utime(abandoned, (time.time() - 7200, time.time() - 7200))
    shutil.rmtree(entry)
    assert [int(i) for i in cached(tf.data.Dataset.range(3), tmp_path, {"split": "train"}, "numbers")] == [0, 1, 2]
    assert not abandoned.exists() and running.exists() and entry.exists()


def _entry_of(cache_dir):
    (entry,) = (path for path in cache_dir.iterdir() if ".partial" not in path.name)
    return entry


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("cut a shard in half", "has .* bytes where .* were written"),
        ("flip a byte", "bytes of .* changed"),
        ("delete the manifest", "manifest is missing"),
        ("delete a part", "is missing"),
    ],
)
def test_a_damaged_entry_is_deleted_and_saved_again_with_a_warning(tmp_path, damage, reason):
    dataset = _numbers(40)
    cached(dataset, tmp_path, {"split": "train"}, "numbers")
    entry = _entry_of(tmp_path)
    (shard,) = entry.rglob("*.snapshot")
    if damage == "cut a shard in half":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    elif damage == "flip a byte":
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(data)
    elif damage == "delete the manifest":
        (entry / "manifest.json").unlink()
    else:
        shutil.rmtree(entry / "000000")
    with pytest.warns(UserWarning, match=f"cache entry {entry} was damaged \\(.*{reason}.*\\): deleted; saving it again"):
        healed = cached(dataset, tmp_path, {"split": "train"}, "numbers")
    assert _elements(healed) == _elements(dataset)
    assert _entry_of(tmp_path) == entry  # saved again, and now whole
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _elements(cached(dataset, tmp_path, {"split": "train"}, "numbers")) == _elements(dataset)


def test_a_damaged_entry_that_cannot_be_deleted_names_the_command_that_clears_it(tmp_path, monkeypatch):
    cached(_numbers(5), tmp_path, {"split": "train"}, "numbers")
    entry = _entry_of(tmp_path)
    (entry / "manifest.json").unlink()

    def read_only(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", read_only)  # root ignores permission bits: a read-only mount, simulated
    with pytest.raises(CorruptDataError, match=f"{entry} is damaged .* cannot be deleted .*rm -rf {entry}.*data.cache_dir=null"):
        cached(_numbers(5), tmp_path, {"split": "train"}, "numbers")


def test_a_full_disk_while_saving_warns_and_returns_the_dataset_leaving_nothing(tmp_path, monkeypatch):
    def full(self, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tf.data.Dataset, "save", full)
    dataset = _numbers(5)
    with pytest.warns(UserWarning, match=f"Not caching decoded examples: {tmp_path} is full"):
        assert cached(dataset, tmp_path, {"split": "train"}, "numbers") is dataset
    assert list(tmp_path.iterdir()) == []


def test_no_cache_dir_or_an_unwritable_one_returns_the_dataset_itself(tmp_path):
    dataset = _numbers(4)
    assert cached(dataset, None, {"split": "train"}, "numbers") is dataset
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="Not caching decoded examples.*data.cache_dir"):
        assert cached(dataset, blocker / "cache", {"split": "train"}, "numbers") is dataset


def test_tfds_domains_cache_each_split_by_its_preprocessing(small_mnist_m_dir, tmp_path):
    uncached = tfds_domains(
        "mnist", "mnist_m", data_dir=str(small_mnist_m_dir), source_train_split="train[:64]", source_test_split="test[:32]"
    )
    for _ in range(2):  # saved, then loaded
        domains = tfds_domains(
            "mnist",
            "mnist_m",
            data_dir=str(small_mnist_m_dir),
            source_train_split="train[:64]",
            source_test_split="test[:32]",
            cache_dir=str(tmp_path),
        )
        for split in ("source_train", "target_train", "source_test", "target_test"):
            expected, got = (next(iter(getattr(d, split).batch(1000))) for d in (uncached, domains))
            np.testing.assert_array_equal(got[0].numpy(), expected[0].numpy())
            np.testing.assert_array_equal(got[1].numpy(), expected[1].numpy())
    assert len(list(tmp_path.iterdir())) == 4
    # Other preprocessing, other entries: never the 28x28 images saved above.
    grey = tfds_domains(
        "mnist",
        "mnist_m",
        data_dir=str(small_mnist_m_dir),
        source_train_split="train[:64]",
        source_test_split="test[:32]",
        preprocessing=ImagePreprocessing(channels=1),
        cache_dir=str(tmp_path),
    )
    assert next(iter(grey.source_train))[0].shape == (28, 28, 1) and len(list(tmp_path.iterdir())) == 8
