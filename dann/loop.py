"""The training loop: batches in, compiled updates, metrics logged, accuracy evaluated."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from dann.algorithm import DANN
from dann.data import DomainDatasets, evaluation_batches, training_batches
from dann.diagnostics import verify_gradients
from dann.evaluation import evaluate_classifier

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite."""


@dataclass
class LoopSettings:
    """How long to train and how often to report.

    Attributes:
        steps: number of updates, >= 1.
        batch_size: examples per domain per update, >= 1.
        log_every: steps between training-metric lines, >= 1.
        eval_every: steps between test-accuracy evaluations, >= 1.
        eval_batch_size: examples per evaluation batch, >= 1.
        seed: the shuffling seed.
        steps_per_call: updates per compiled call (`DANN.update_steps`), >= 1; `steps`,
            `log_every` and `eval_every` must be multiples of it.
    """

    steps: int
    batch_size: int
    log_every: int
    eval_every: int
    eval_batch_size: int = 1000
    seed: int = 0
    steps_per_call: int = 1

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "eval_every", "eval_batch_size", "steps_per_call"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"trainer.{name} must be >= 1. Received: {name}={value}")
        for name in ("steps", "log_every", "eval_every"):
            value = getattr(self, name)
            if value % self.steps_per_call:
                raise ValueError(
                    f"trainer.{name}={value} is not a multiple of trainer.steps_per_call={self.steps_per_call}: "
                    "logging and evaluation happen between compiled calls. Change one of them."
                )


def fit(algorithm: DANN, datasets: DomainDatasets, settings: LoopSettings, metrics_path: Path | None = None) -> dict:
    """Trains `algorithm` on `datasets` and returns the final metrics.

    Before the first update, `verify_gradients` checks that every trainable variable
    gets a gradient and that the domain gradient reaches the features reversed.

    Args:
        algorithm: the model, optimizer and schedules to train.
        datasets: source and target splits.
        settings: steps, batch size and reporting intervals.
        metrics_path: where to append one JSON line per logging or evaluation interval.

    Returns:
        `source_test_accuracy`, `target_test_accuracy`, `steps`, `train_seconds`, and
        `input_wait_fraction`: the share of training time (evaluation excluded) spent
        waiting for the next batch, i.e. how far the input pipeline falls behind the step.
    """
    calls = iter(training_batches(datasets, settings.batch_size, settings.seed).batch(settings.steps_per_call))
    tests = {
        "source_test_accuracy": evaluation_batches(datasets.source_test, settings.eval_batch_size, datasets.normalize),
        "target_test_accuracy": evaluation_batches(datasets.target_test, settings.eval_batch_size, datasets.normalize),
    }
    writer = _JsonLines(metrics_path)
    window: list[dict[str, tf.Tensor]] = []
    accuracies: dict[str, float] = {}
    start = time.perf_counter()
    waiting = evaluating = 0.0
    for first_step in range(0, settings.steps, settings.steps_per_call):
        before_input = time.perf_counter()
        (source_x, source_y), target_x = next(calls)  # (steps_per_call, batch_size, ...) each
        waiting += time.perf_counter() - before_input
        step_tensor = tf.constant(first_step, tf.int64)
        if first_step == 0:
            verify_gradients(algorithm, source_x[0], source_y[0], target_x[0], step_tensor)
        window.append(algorithm.update_steps(source_x, source_y, target_x, step_tensor))
        done = first_step + settings.steps_per_call
        if done % settings.log_every == 0 or done == settings.steps:
            record = _mean(window)
            window.clear()
            _check_finite(record, done)
            writer.write({"step": done, "elapsed_seconds": time.perf_counter() - start, **record})
            log.info("step %d/%d  %s", done, settings.steps, _format(record))
        if done % settings.eval_every == 0 or done == settings.steps:
            before_evaluation = time.perf_counter()
            accuracies = {
                name: evaluate_classifier(algorithm.predict, split, datasets.num_classes)["accuracy"]
                for name, split in tests.items()
            }
            evaluating += time.perf_counter() - before_evaluation
            writer.write({"step": done, "elapsed_seconds": time.perf_counter() - start, **accuracies})
            log.info("step %d/%d  %s", done, settings.steps, _format(accuracies))
    train_seconds = time.perf_counter() - start
    return {
        **accuracies,
        "steps": settings.steps,
        "train_seconds": train_seconds,
        "input_wait_fraction": waiting / max(train_seconds - evaluating, 1e-9),
    }


def _mean(window: list[dict[str, tf.Tensor]]) -> dict[str, float]:
    return {key: float(np.mean([float(metrics[key]) for metrics in window])) for key in window[0]}


def _check_finite(record: dict[str, float], step: int) -> None:
    bad = [key for key in ("label_loss", "domain_loss", "loss") if not math.isfinite(record[key])]
    if bad:
        raise NonFiniteLossError(
            f"{', '.join(bad)} became {record[bad[0]]} by step {step}. Lower optimizer.lr, "
            "check the inputs for NaNs, or shorten the lambda ramp (schedule.adaptation)."
        )


def _format(record: dict[str, float]) -> str:
    return "  ".join(f"{key}={value:.4g}" for key, value in record.items())


class _JsonLines:
    def __init__(self, path: Path | None):
        self.path = path

    def write(self, record: dict) -> None:
        if self.path is not None:
            with open(self.path, "a") as stream:
                stream.write(json.dumps(record) + "\n")
