"""`python -m dann.evaluate run_dir=PATH dataset=NAME split=SPLIT`: accuracy of a finished run.

Loads the run's model and its preprocessing (from the run's `config.yaml`), evaluates it
on any dataset and split TFDS knows (`mnist_m/original`, `svhn_cropped`, `test[:1000]`), or
on a folder of class folders of images (`dataset=/path/to/folder`: all its images, or those
of its `split` sub-folder when it has `train/` and `test/`), prints overall and per-class
accuracy, and writes them to `<run_dir>/eval_<dataset>_<split>.json` (`/` becomes `_`).
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import tensorflow as tf
from omegaconf import DictConfig

from dann.algorithms import predicted_classes
from dann.data import check_image_folder, evaluation_batches, image_folder_examples, load_split
from dann.metrics import evaluate_classifier
from dann.runs import evaluation_file, load_config, load_model, load_preprocessing


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


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    figures = evaluate_run(cfg.run_dir, cfg.dataset, cfg.split, cfg.data_dir, cfg.batch_size)
    print(f"{figures['dataset']} {figures['split']}: accuracy {figures['accuracy']:.4f} on {figures['num_examples']} examples")
    for label, value in enumerate(figures["per_class_accuracy"]):
        print(f"  class {label}: " + ("no examples" if value is None else f"{value:.4f}"))


if __name__ == "__main__":
    main()
