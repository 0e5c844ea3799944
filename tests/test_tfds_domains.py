"""TFDS source/target domains: preprocessing, batching, choosing splits, and refusing mismatched label spaces or overlapping splits."""

import importlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tests_support import SMALL_SPLIT, TINY_OVERRIDES, write_original_mnist_m

from dann.config import build_datasets, compose_config
from dann.data import CorruptDataError, ImagePreprocessing, MissingDataError, RandomInversion, tfds_domains, training_batches
from dann.data.tfds_domains import check_disjoint, check_record_files, check_same_label_space, choose_split
from dann.experiment import train


def test_preprocessing_converts_channels_resizes_and_normalises():
    grey = tf.constant(np.full((28, 28, 1), 255, np.uint8))
    preprocessing = ImagePreprocessing(image_size=[32, 32], channels=3, mean=[0.5], std=[0.25])
    prepared = preprocessing.prepare(grey)
    assert prepared.shape == (32, 32, 3) and prepared.dtype == tf.uint8
    normalised = preprocessing.normalize(prepared[None])
    np.testing.assert_allclose(normalised.numpy(), 2.0)  # (1 - 0.5) / 0.25
    assert preprocessing.input_shape == (32, 32, 3)
    colour = tf.constant(np.full((28, 28, 3), 90, np.uint8))
    assert ImagePreprocessing(channels=1).prepare(colour).shape == (28, 28, 1)


@pytest.mark.parametrize("kwargs", [{"channels": 2}, {"image_size": (0, 28)}, {"std": (0.0,)}])
def test_preprocessing_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError, match="Received"):
        ImagePreprocessing(**kwargs)


def test_mnist_to_mnist_m_batches(small_mnist_m_dir):
    domains = tfds_domains("mnist", "mnist_m", data_dir=str(small_mnist_m_dir), source_train_split="train[:256]")
    assert domains.num_classes == 10 and domains.input_shape == (28, 28, 3)
    (source_x, source_y), target_x = next(iter(training_batches(domains, batch_size=32, seed=0)))
    assert source_x.shape == (32, 28, 28, 3) and target_x.shape == (32, 28, 28, 3)
    assert source_x.dtype == tf.float32 and source_y.dtype == tf.int64
    assert float(tf.reduce_min(source_x)) == -1.0 and float(tf.reduce_max(source_x)) == 1.0
    target_count = sum(1 for _ in domains.target_train)
    assert target_count == SMALL_SPLIT


def test_mismatched_label_spaces_are_refused():
    digits = tfds.features.ClassLabel(num_classes=10)
    check_same_label_space("mnist", digits, "mnist_m", tfds.features.ClassLabel(num_classes=10))
    with pytest.raises(ValueError, match="different label spaces"):
        check_same_label_space("mnist", digits, "three_shapes", tfds.features.ClassLabel(names=["a", "b", "c"]))


def test_unknown_dataset_name_is_refused(small_mnist_m_dir):
    with pytest.raises(ValueError, match="Unknown dataset 'mnist_mm'"):
        tfds_domains("mnist", "mnist_mm", data_dir=str(small_mnist_m_dir))


def test_per_image_standardisation_removes_colour_cast():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 200, (4, 28, 28, 3)).astype(np.uint8)
    tinted = np.clip(images.astype(int) + [50, 0, 20], 0, 255).astype(np.uint8)
    preprocessing = ImagePreprocessing(per_image=True)
    a, b = preprocessing.normalize(tf.constant(images)), preprocessing.normalize(tf.constant(tinted))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-3)
    np.testing.assert_allclose(tf.reduce_mean(a, axis=[1, 2]).numpy(), 0.0, atol=1e-4)


def test_random_inversion_inverts_whole_images_at_the_rate():
    images = tf.constant(np.full((2000, 2, 2, 1), 10, np.uint8))
    seed = tf.constant([3, 4], tf.int64)
    out = RandomInversion(rate=0.3)(images, seed).numpy()
    per_image = out.reshape(2000, -1)
    assert set(np.unique(per_image)) == {10, 245}
    assert (per_image == per_image[:, :1]).all()  # an image is inverted whole or not at all
    assert 0.25 < np.mean(per_image[:, 0] == 245) < 0.35
    np.testing.assert_array_equal(RandomInversion(rate=0.3)(images, seed).numpy(), out)  # the seed decides
    np.testing.assert_array_equal(RandomInversion(rate=0.0)(images, seed).numpy(), images.numpy())
    with pytest.raises(ValueError, match="rate"):
        RandomInversion(rate=1.5)


def test_random_inversion_per_channel_draws_each_channel():
    images = tf.constant(np.full((2000, 2, 2, 3), 10, np.uint8))
    out = RandomInversion(rate=0.5, per_channel=True)(images, tf.constant([3, 4], tf.int64)).numpy()
    per_channel = out.reshape(2000, 4, 3)
    assert (per_channel == per_channel[:, :1]).all()  # a channel is inverted whole or not at all
    mixed = (per_channel[:, 0] == 245).any(axis=1) & (per_channel[:, 0] == 10).any(axis=1)
    assert 0.7 < np.mean(mixed) < 0.8  # 1 - 2 / 2**3 of the images have channels of both polarities


def _original_with_train_only(tmp_path, count=30):
    write_original_mnist_m(tmp_path / "downloads" / "manual", "train", count)
    builder = tfds.builder("mnist_m/original", data_dir=tmp_path)
    builder.download_and_prepare()
    return builder


def test_a_split_list_chooses_the_first_the_dataset_has(tmp_path):
    builder = _original_with_train_only(tmp_path)
    assert choose_split(builder, "mnist_m/original", ["test", "train[20:]"]) == "train[20:]"
    assert choose_split(builder, "mnist_m/original", "train[:20]") == "train[:20]"
    with pytest.raises(MissingDataError, match=r"none of the splits \['test', 'train\[50000:\]'\] with examples"):
        choose_split(builder, "mnist_m/original", ["test", "train[50000:]"])
    with pytest.raises(MissingDataError, match=r"'train\[50000:\]' selects no examples .*train \(30 examples\)"):
        choose_split(builder, "mnist_m/original", "train[50000:]")


def test_a_test_split_that_overlaps_the_training_split_is_refused(tmp_path):
    builder = _original_with_train_only(tmp_path)
    check_disjoint(builder, "mnist_m/original", "train[:20]", "train[20:]")
    with pytest.raises(ValueError, match=r"'train\[15:\]' shares 5 examples with the training split 'train\[:20\]'"):
        check_disjoint(builder, "mnist_m/original", "train[:20]", "train[15:]")
    with pytest.raises(ValueError, match="shares 30 examples"):
        check_disjoint(builder, "mnist_m/original", "train", "train[:50%]+train[50%:]")


@pytest.mark.slow
def test_genuine_experiment_reports_on_the_official_test_split_when_built(small_genuine_dir, tmp_path):
    # The fixture's train split holds 30 images, fewer than the protocol's 50,000 (TFDS refuses a slice past the end);
    # A few hundred source digits keep the data preparation and the evaluations of the wide network short.
    overrides = [
        'data.target_train_split="train[:20]"',
        'data.source_train_split="train[:512]"',
        'data.source_test_split="test[:200]"',
        "model.feature_extractor.filters=[8,8]",  # the recipe's width is not what is tested
        *TINY_OVERRIDES,
    ]
    cfg = compose_config(["+experiment=mnist_m_genuine", f"data.data_dir={small_genuine_dir}", *overrides])
    results = train(cfg, tmp_path / "run")
    assert (results["target_train_split"], results["target_test_split"]) == ("train[:20]", "test")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["target_test_split"] == "test"


def test_genuine_experiment_refuses_a_dev_split_inside_the_training_split(small_genuine_dir, tmp_path):
    overrides = ['data.target_train_split="train[:20]"', 'data.target_test_split="train[15:]"']
    cfg = compose_config(["+experiment=mnist_m_genuine", f"data.data_dir={small_genuine_dir}", *overrides])
    with pytest.raises(ValueError, match="shares 5 examples"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_recipe_moves_to_the_synthetic_32_pair_with_its_data_settings():
    cfg = compose_config(["+experiment=mnist_m_genuine_small_cnn", "data=mnist_m_synthetic_32"])
    assert (cfg.data.source, cfg.data.target, cfg.data.target_test_split) == ("mnist", "mnist_m/synthetic_32", "test")
    assert cfg.data.preprocessing.per_image  # the recipe's data settings, kept


def test_the_reverse_pair_builds_from_the_genuine_mnist_m_to_mnist(small_genuine_dir):
    cfg = compose_config(["+experiment=mnist_m_genuine", "data=mnist_m_genuine_reverse", f"data.data_dir={small_genuine_dir}"])
    assert cfg.data.preprocessing.per_image and cfg.data.source_augmentation  # the recipe's data settings, kept
    cfg.data.source_train_split, cfg.data.source_test_split = "train[:20]", "train[20:]"  # the fixture's 30 images
    cfg.data.target_train_split, cfg.data.target_test_split = "train[:64]", "test[:64]"
    datasets = build_datasets(cfg)
    source_labels = np.concatenate([labels for _, labels in datasets.source_test.batch(64).as_numpy_iterator()])
    assert len(source_labels) == 10 and datasets.target_test.cardinality() == 64
    assert datasets.input_shape == (28, 28, 3)


def test_prepare_copies_what_a_mirror_holds_and_says_where(offline_data_dir, run_command, tmp_path):
    data_dir = tmp_path / "tensorflow_datasets"
    done = run_command("dann.data", "mnist", "--mirror", str(offline_data_dir), "--data-dir", str(data_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"mnist: {data_dir / 'mnist' / '3.0.1'} (test 10,000, train 60,000)"
    assert (data_dir / "downloads" / "manual" / "BSR").is_dir()  # the manual downloads: offline, mnist_m builds from them
    again = run_command("dann.data", "mnist", "--data-dir", str(data_dir), cwd=tmp_path)  # prepared: nothing to copy or download
    assert again.returncode == 0 and again.stdout == done.stdout


def test_prepare_without_data_or_network_says_what_to_do_in_one_line(run_command, tmp_path, monkeypatch):
    prepare = importlib.import_module("dann.data.prepare")  # the module, whatever `dann.data.prepare` names
    monkeypatch.setattr(prepare, "unreachable_hosts", lambda builder: ["storage.example"])
    done = run_command("dann.data", "mnist", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().startswith("MissingDataError: mnist is not prepared in") and len(done.stderr.strip().splitlines()) == 1
    assert "Connect to the internet, or put a prepared copy in" in done.stderr


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("flip a byte", "corrupted record at byte"),
        ("cut mid-record", "truncated record at byte"),
        ("cut at a record boundary", "holds 1 records where 30"),
    ],
)
def test_a_damaged_record_file_is_named_with_the_command_that_rebuilds_it(small_genuine_dir, tmp_path, damage, reason):
    shutil.copytree(small_genuine_dir / "mnist_m" / "original", tmp_path / "mnist_m" / "original")
    builder = tfds.builder("mnist_m/original", data_dir=tmp_path)
    check_record_files(builder, "mnist_m/original", "train[:5]")  # whole files pass
    (path,) = builder.info.splits["train"].filepaths
    data = bytearray(Path(path).read_bytes())
    first_record = 8 + 4 + int.from_bytes(data[:8], "little") + 4  # its length, the length's CRC, its bytes, their CRC
    if damage == "flip a byte":
        data[first_record + 30] ^= 0xFF
    else:
        data = data[: first_record + (30 if damage == "cut mid-record" else 0)]
    Path(path).write_bytes(data)
    rebuild = f"rm -rf {builder.data_dir} && python -m dann.data mnist_m/original --data-dir {tmp_path}"
    with pytest.raises(CorruptDataError, match=f"mnist_m/original: {path} .*{reason}.* Rebuild it: {re.escape(rebuild)}$"):
        check_record_files(builder, "mnist_m/original", "train[:5]")
