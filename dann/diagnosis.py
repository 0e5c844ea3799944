"""Which variables and components get gradients under a training config, checked before any training (`diagnose`)."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf
from omegaconf import DictConfig

from dann.config import build_algorithm, build_datasets, build_model, check_algorithm, choose_run_precision, with_plain_choices
from dann.data import training_batches
from dann.devices import describe_devices
from dann.gradient_checks import CoverageReport, GradientFlow, coverage_of_update, gradient_flow
from dann.precision import PrecisionChoice


@dataclass(frozen=True)
class Diagnosis:
    """The gradients of one update of the algorithm `cfg` trains, on one batch pair, against what it declares."""

    devices: str  # the devices and the strategy's replicas a run would train on (`dann.devices.describe_devices`)
    precision: PrecisionChoice
    settings: str  # the compilation and determinism settings a run would use
    algorithm: str
    coverage: CoverageReport  # which trainable variables the update reaches
    flow: GradientFlow  # each loss's gradient norm per component (lambda = 1)

    @property
    def ok(self) -> bool:
        """Every variable gets a gradient, each loss reaches the components declared, and the reversal holds."""
        return self.coverage.ok and self.flow.ok

    def __str__(self) -> str:
        return (
            f"{self.devices}\n{self.precision}\n{self.settings}\n\nGradient coverage of one update (step 0):\n{self.coverage}\n\n"
            f"Gradient norm per loss and component, {self.algorithm} (lambda = 1):\n{self.flow}"
        )


def diagnose(cfg: DictConfig) -> Diagnosis:
    """Builds the model and algorithm exactly as a training run of `cfg` would, and checks the gradients of one batch pair."""
    cfg = with_plain_choices(cfg)
    keras.utils.set_random_seed(cfg.seed)
    check_algorithm(cfg)
    devices = describe_devices(cfg.trainer.strategy, cfg.trainer.cpu_devices)
    datasets = build_datasets(cfg)
    precision = choose_run_precision(cfg, datasets)
    algorithm = build_algorithm(cfg, build_model(cfg, datasets, precision.policy))
    datasets = algorithm.training_datasets(datasets)
    (source_x, source_y), target_x = next(iter(training_batches(datasets, cfg.trainer.batch_size, cfg.seed)))
    _, gradients_and_variables = algorithm.compute_gradients(source_x, source_y, target_x, tf.constant(0, tf.int64))
    return Diagnosis(
        devices=devices,
        precision=precision,
        settings=f"compiled  jit_compile={str(cfg.trainer.jit_compile).lower()}, deterministic={str(cfg.trainer.deterministic).lower()}",
        algorithm=type(algorithm).__name__,
        coverage=coverage_of_update(algorithm.model.trainable_variables, gradients_and_variables),
        flow=gradient_flow(algorithm, source_x, source_y, target_x),
    )
