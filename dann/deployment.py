"""A finished run, put to use: evaluated on other data (`evaluate_run`) and exported to serve without `dann` (`export_run`).

`evaluate_run` loads the run's model and its preprocessing (from the run's `config.yaml`) and
evaluates it on any dataset and split TFDS knows (`mnist_m/original`, `svhn_cropped`,
`test[:1000]`), or on a folder of class folders of images (all its images, or those of its
`split` sub-folder when it has `train/` and `test/`); it writes overall and per-class accuracy
to `<run_dir>/eval_<dataset>_<split>.json` (`/` becomes `_`).

`export_run` writes `<run_dir>/export/saved_model`, a SavedModel whose `serving_default`
signature takes raw inputs of any batch size, uint8 images `(batch, height, width, channels)` as
the run's preprocessing produces them (or float32 vectors for non-image data), and returns
`{"probabilities": (batch, num_classes)}`: the run's normalisation is inside. Beside it,
`model.keras`, the Keras model (normalised inputs, logits out). Loading needs TensorFlow only:

    serve = tf.saved_model.load("export/saved_model").signatures["serving_default"]
    probabilities = serve(images=tf.constant(uint8_images))["probabilities"]
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf
from omegaconf import DictConfig

from dann.algorithms import predicted_classes
from dann.data import check_image_folder, evaluation_batches, image_folder_examples, load_split
from dann.metrics import evaluate_classifier
from dann.runs import EXPORT_DIR, evaluation_file, load_config, load_model, load_preprocessing


def evaluate_run(run_dir: str | Path, dataset: str, split: str = "test", data_dir: str | None = None, batch_size: int = 1000) -> dict:
    """Evaluates the model of `run_dir` on `dataset`/`split`; writes and returns the figures."""
    cfg = load_config(run_dir)
    preprocessing = load_preprocessing(cfg)
    if preprocessing is None:
        raise ValueError(f"{run_dir} was trained on {cfg.data._target_}, not on TFDS images: there is no dataset to pick.")
    model = load_model(run_dir)
    num_classes = model.label_classifier.output_shape[-1]
    if Path(dataset).is_dir():
        examples = _folder_examples(Path(dataset), split, cfg, num_classes, preprocessing)
    else:
        examples = load_split(dataset, split, data_dir if data_dir is not None else cfg.data.get("data_dir"))
        examples = examples.map(lambda x, y: (preprocessing.prepare(x), y))
    figures = evaluate_classifier(
        lambda x: predicted_classes(model, x),
        evaluation_batches(examples, batch_size, preprocessing.normalize),
        num_classes,
        progress=True,
    )
    figures = {"dataset": dataset, "split": split, **figures}
    evaluation_file(run_dir, dataset, split).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _folder_examples(folder: Path, split: str, cfg: DictConfig, num_classes: int, preprocessing) -> tf.data.Dataset:
    """The prepared `(image, label)` examples of an image folder (its `split` sub-folder if it has one) of the run's classes."""
    if (folder / split).is_dir():
        folder = folder / split
    classes = check_image_folder(folder)
    trained_on = check_image_folder(Path(cfg.data.source)) if cfg.data._target_ == "dann.data.image_folder_domains" else None
    if len(classes) != num_classes or trained_on not in (None, classes):
        raise ValueError(f"{folder} has the classes {classes}; the run was trained on {trained_on or f'{num_classes} classes'}.")
    return image_folder_examples(folder, classes, preprocessing)


def export_run(run_dir: str | Path) -> Path:
    """Writes the SavedModel and `.keras` file of the finished run `run_dir`; returns the SavedModel's path."""
    run_dir = Path(run_dir)
    model = load_model(run_dir)
    preprocessing = load_preprocessing(load_config(run_dir))
    if preprocessing is not None:
        spec, normalize = tf.TensorSpec((None, *preprocessing.input_shape), tf.uint8), preprocessing.normalize
    else:  # vectors, already float32: the model's own input shape
        spec, normalize = tf.TensorSpec(model.feature_extractor.inputs[0].shape, tf.float32), tf.identity

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model(normalize(images), training=False)
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec.from_spec(spec, name="images")])
    export_dir = run_dir / EXPORT_DIR
    archive.write_out(str(export_dir / "saved_model"), verbose=False)
    model.save(export_dir / "model.keras")
    return export_dir / "saved_model"
