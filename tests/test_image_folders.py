"""Your own images as domains: folders of class folders, through the library and the commands."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tests_support import TINY_OVERRIDES, write_domain

from dann.config import compose_config
from dann.data import CorruptDataError, ImagePreprocessing, MissingDataError, image_folder_domains
from dann.deployment import evaluate_run, export_run
from dann.experiment import train
from dann.runs import evaluation_file

SMALL = ImagePreprocessing(image_size=(28, 28))


def _count(dataset):
    return sum(1 for _ in dataset)


def test_folders_split_by_a_seeded_fraction_or_as_given(tmp_path):
    source = write_domain(tmp_path / "a")
    target = write_domain(tmp_path / "b", split_folders=True, per_class=6, brightness=30)
    domains = image_folder_domains(str(source), str(target), SMALL, test_fraction=0.25, seed=3)
    assert (_count(domains.source_train), _count(domains.source_test)) == (15, 5)
    assert (_count(domains.target_train), _count(domains.target_test)) == (12, 12)
    image, label = next(iter(domains.source_train))
    assert image.shape == (28, 28, 3) and image.dtype == tf.uint8 and label.dtype == tf.int64
    assert domains.num_classes == 2 and domains.input_shape == (28, 28, 3)
    again = image_folder_domains(str(source), str(target), SMALL, test_fraction=0.25, seed=3)
    held_out = [[x.numpy().tobytes() for x, _ in d.source_test] for d in (domains, again)]
    assert sorted(held_out[0]) == sorted(held_out[1])  # the seed decides which images are held out


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (lambda a, b: (b / "dog").rename(b / "dogs"), ValueError, r"different classes: \['cat', 'dog'\] in .*\['cat', 'dogs'\]"),
        (lambda a, b: [path.unlink() for path in (a / "cat").iterdir()], ValueError, r"the folder .*cat holds no images"),
        (lambda a, b: (b / "cat" / "notes.txt").write_text("hello"), CorruptDataError, r"notes.txt is not an image"),
        (
            lambda a, b: (b / "cat" / "000.png").write_bytes(b"not a png"),
            CorruptDataError,
            r"1 image\(s\) cannot be read: .*000.png \(not a PNG file",
        ),
        (lambda a, b: a.rename(a.with_name("moved")), MissingDataError, r"the source folder .*a does not exist"),
    ],
)
def test_bad_folders_say_what_is_wrong(tmp_path, damage, error, message):
    source, target = write_domain(tmp_path / "a"), write_domain(tmp_path / "b")
    damage(source, target)
    with pytest.raises(error, match=message):
        image_folder_domains(str(source), str(target), SMALL)


@pytest.mark.slow
def test_train_evaluate_export_and_serve_from_folders(run_command, tmp_path):
    source = write_domain(tmp_path / "a")
    target = write_domain(tmp_path / "b", brightness=30)
    run_dir = tmp_path / "run"
    folders = [
        "data=image_folders",
        "model=mnist_cnn",
        f"data.source={source}",
        f"data.target={target}",
        "data.preprocessing.image_size=[28,28]",
        "data.skip_unreadable=true",
    ]
    _truncate(source / "dog" / "004.png")
    done = run_command("dann.train", *folders, *TINY_OVERRIDES, "trainer.plots=true", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["source_folder"] == str(source) and 0.0 <= results["target_test_accuracy"] <= 1.0
    assert all((run_dir / name).stat().st_size > 10_000 for name in ("learning_curves.png", "health.png", "embedding.png"))
    assert results["skipped_files"] == 1 and "skipped 1 unreadable input files" in (run_dir / "train.log").read_text()
    assert (
        run_dir / "skipped_files.txt"
    ).read_text() == f"{source / 'dog' / '004.png'}\tInvalid PNG data, size {(source / 'dog' / '004.png').stat().st_size}\n"

    # The library calls behind `python -m dann.evaluate` and `python -m dann.export` (run as commands in tests/test_cli.py).
    figures = evaluate_run(run_dir, str(target))
    assert figures["num_examples"] == 20 and 0.0 <= figures["accuracy"] <= 1.0
    assert evaluation_file(run_dir, str(target), "test").exists()

    served = export_run(run_dir)  # served without dann by a fresh interpreter: tests/test_cli.py
    serve = tf.saved_model.load(str(served)).signatures["serving_default"]
    assert serve(images=tf.zeros((3, 28, 28, 3), tf.uint8))["probabilities"].shape == (3, 2)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_unreadable_images_are_named_before_any_work_or_skipped_and_listed(tmp_path):
    source, target = write_domain(tmp_path / "a"), write_domain(tmp_path / "b", brightness=30)
    pixels = tf.fill([20, 24, 3], tf.constant(90, tf.uint8))
    for index in range(7):  # truncated JPEGs, as a killed copy leaves them
        jpeg = target / "dog" / f"cut{index}.jpg"
        jpeg.write_bytes(tf.io.encode_jpeg(pixels).numpy())
        _truncate(jpeg)
    _truncate(source / "cat" / "003.png")
    cut = r"^8 image\(s\) cannot be read: \S*a/cat/003.png \(Invalid PNG data.*\); \S*cut0.jpg \(jpeg::Uncompress failed.*"
    with pytest.raises(CorruptDataError, match=cut + r"cut3.jpg \(.*\); \.\.\.\. .*data.skip_unreadable=true"):
        image_folder_domains(str(source), str(target), SMALL)
    domains = image_folder_domains(str(source), str(target), SMALL, skip_unreadable=True)
    assert sorted(Path(path).name for path in domains.skipped_files) == ["003.png", *(f"cut{i}.jpg" for i in range(7))]
    assert _count(domains.source_train) + _count(domains.source_test) == 19
    assert _count(domains.target_train) + _count(domains.target_test) == 20


def test_grey_palette_rgba_and_small_images_are_converted_and_resized(tmp_path):
    image = pytest.importorskip("PIL.Image")
    source, target = write_domain(tmp_path / "a"), write_domain(tmp_path / "b")
    rgb = np.full((20, 24, 3), 200, np.uint8)
    image.fromarray(rgb[..., 0]).save(source / "cat" / "grey.png")
    image.fromarray(rgb).convert("P", palette=image.ADAPTIVE).save(source / "cat" / "palette.gif")
    image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(source / "cat" / "rgba.png")
    image.fromarray(rgb[:5, :5]).save(source / "cat" / "small.bmp")
    domains = image_folder_domains(str(source), str(target), SMALL, test_fraction=0.5)
    images = [x for split in (domains.source_train, domains.source_test) for x, _ in split]
    assert len(images) == 24 and all(x.shape == (28, 28, 3) for x in images)
    assert sum(int(tf.reduce_all(x == 200)) for x in images) == 4  # each converted to the same grey-200 RGB image


def test_class_sorted_folders_are_read_in_a_seeded_shuffled_order(tmp_path):
    source = write_domain(tmp_path / "a", split_folders=True, per_class=30)
    target = write_domain(tmp_path / "b", split_folders=True, per_class=30)
    labels = [int(y) for _, y in image_folder_domains(str(source), str(target), SMALL, seed=1).target_test]
    assert sorted(labels) == [0] * 30 + [1] * 30 and 5 <= sum(labels[:20]) <= 15  # no longer class by class
    assert labels == [int(y) for _, y in image_folder_domains(str(source), str(target), SMALL, seed=1).target_test]
    assert labels != [int(y) for _, y in image_folder_domains(str(source), str(target), SMALL, seed=2).target_test]


def test_a_bad_folder_stops_the_run_before_training_and_leaves_nothing(tmp_path):
    # The command shows these errors in one line (tests/test_errors.py runs it so).
    source, target = write_domain(tmp_path / "a"), write_domain(tmp_path / "b", classes=("cat", "cow"))
    folders = ["data=image_folders", "model=mnist_cnn", f"data.source={source}", f"data.target={target}"]
    with pytest.raises(ValueError, match="different classes"):
        train(compose_config([*folders, *TINY_OVERRIDES]), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="data.source, data.target must be given"):
        train(compose_config(["data=image_folders", "model=mnist_cnn", *TINY_OVERRIDES]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_unlabelled_target_trains_and_reports_no_target_accuracy(tmp_path):
    source = write_domain(tmp_path / "a")
    target = write_domain(tmp_path / "b", brightness=30)
    for image in target.rglob("*.png"):  # the same images, not sorted into classes
        image.rename(target / f"{image.parent.name}_{image.name}")
    for folder in ("cat", "dog"):
        (target / folder).rmdir()
    domains = image_folder_domains(str(source), str(target), SMALL)
    assert not domains.target_labelled and {int(label) for _, label in domains.target_train} == {-1}
    folders = ["data=image_folders", "model=mnist_cnn", f"data.source={source}", f"data.target={target}"]
    cfg = compose_config([*folders, "data.preprocessing.image_size=[28,28]", *TINY_OVERRIDES])
    results = train(cfg, tmp_path / "run")
    assert results["target_test_accuracy"] is None and results["source_test_accuracy"] is not None
    evaluations = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "target_test_accuracy" not in evaluations[-1] and "target_largest_class_share" in evaluations[-1]
