"""`python -m dann.diagnose +experiment=NAME [algorithm=NAME]`: prints which variables and components get gradients.

Builds the model and algorithm exactly as `dann.train` would, takes one batch pair,
and prints the gradient coverage of one update and the gradient flow of each loss
against the components the algorithm declares. Exits with status 1 when a variable gets
no gradient, a loss reaches the wrong components, or the reversal is broken.
"""

from __future__ import annotations

import sys

import hydra
import keras
import tensorflow as tf
from omegaconf import DictConfig

from dann.config import (
    build_algorithm,
    build_datasets,
    build_model,
    check_algorithm,
    choose_run_precision,
    register_configs,
    with_plain_choices,
)
from dann.data import training_batches
from dann.gradient_checks import coverage_of_update, gradient_flow

register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="diagnose")
def main(cfg: DictConfig) -> None:
    cfg = with_plain_choices(cfg)
    keras.utils.set_random_seed(cfg.seed)
    check_algorithm(cfg)
    datasets = build_datasets(cfg)
    precision = choose_run_precision(cfg, datasets)
    print(f"{precision}\n")
    algorithm = build_algorithm(cfg, build_model(cfg, datasets, precision.policy))
    datasets = algorithm.training_datasets(datasets)
    (source_x, source_y), target_x = next(iter(training_batches(datasets, cfg.trainer.batch_size, cfg.seed)))
    _, gradients_and_variables = algorithm.compute_gradients(source_x, source_y, target_x, tf.constant(0, tf.int64))
    coverage = coverage_of_update(algorithm.model.trainable_variables, gradients_and_variables)
    flow = gradient_flow(algorithm, source_x, source_y, target_x)
    print("Gradient coverage of one update (step 0):")
    print(coverage)
    print(f"\nGradient norm per loss and component, {type(algorithm).__name__} (lambda = 1):")
    print(flow)
    if not (coverage.ok and flow.ok):
        sys.exit(1)


if __name__ == "__main__":
    main()
