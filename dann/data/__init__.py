"""Datasets: source/target pairs from TFDS, image folders or numpy, and the batches a training step consumes.

Importing this package registers the `mnist_m` TFDS builder.
"""

from dann.data.domains import DomainDatasets, check_finite_inputs, evaluation_batches, stacked_calls, training_batches
from dann.data.image_folders import check_image_folder, image_folder_domains, image_folder_examples
from dann.data.mnist_m import MnistM
from dann.data.moons import moons_domains
from dann.data.prepare import CorruptDataError, MissingDataError, dataset_builder, prepare_datasets
from dann.data.tfds_domains import ImagePreprocessing, RandomInversion, load_split, tfds_domains

__all__ = [
    "CorruptDataError",
    "DomainDatasets",
    "ImagePreprocessing",
    "MissingDataError",
    "MnistM",
    "RandomInversion",
    "dataset_builder",
    "prepare_datasets",
    "check_finite_inputs",
    "check_image_folder",
    "evaluation_batches",
    "image_folder_domains",
    "image_folder_examples",
    "load_split",
    "moons_domains",
    "stacked_calls",
    "tfds_domains",
    "training_batches",
]
