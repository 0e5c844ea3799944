"""The training loop: batches in, compiled updates, metrics logged, evaluated, checkpointed.

With a run directory, `fit` keeps there:
  checkpoints/      `tf.train.CheckpointManager` checkpoints: model, optimizer, step, the
                    input pipeline's position, the random layers' seed states, the
                    algorithm's state and the model-selection state; `fit` resumes from
                    the latest one
  metrics.jsonl     one JSON line per logging or evaluation interval, each with its wall time
                    (`elapsed_seconds` since the process started; evaluations also `eval_seconds`)
  tensorboard/      the same figures as TensorBoard scalars
  selected.weights.h5  the weights that `select` prefers so far (not with `select="last"`)
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from dann.algorithms import Algorithm
from dann.data import DomainDatasets, check_finite_inputs, evaluation_batches, stacked_calls, training_batches
from dann.gradient_checks import verify_gradients
from dann.health import HealthMonitor, prediction_health
from dann.health.advice import RunContext
from dann.metrics import domain_metrics, evaluate_classifier
from dann.runs import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    SELECTED_WEIGHTS_FILE,
    TENSORBOARD_DIR,
    RunDirectoryError,
    load_metrics,
    write_atomically,
)
from dann.selection import SELECT_OPTIONS, VALIDATORS, label_free_evidence, validator_scores

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite."""


class Preempted(Exception):
    """SIGTERM (a scheduler's preemption) stopped training after a checkpoint; the same command resumes."""


# The exit status of a preempted run: sysexits.h's EX_TEMPFAIL, "temporary failure, retry later",
# which a scheduler's retry policy can match (Kubernetes podFailurePolicy onExitCodes, a SLURM requeue script).
EXIT_PREEMPTED = 75


@dataclass
class TrainerSettings:
    """How long to train and how often to report.

    Attributes:
        steps: number of updates, >= 1.
        batch_size: examples per domain per update, >= 1.
        log_every: steps between training-metric lines, >= 1.
        eval_every: steps between test-accuracy evaluations, >= 1.
        eval_batch_size: examples per evaluation batch, >= 1.
        seed: the shuffling seed.
        steps_per_call: updates per compiled call (`Algorithm.update_steps`), >= 1; a call
            ends early where logging, an evaluation, a checkpoint or the end falls (`call_lengths`).
        checkpoint_every: steps between checkpoints, >= 1 (and one at the end).
        keep_checkpoints: how many recent checkpoints to keep, >= 1.
        progress: show a progress bar when standard output is a terminal.
        select: which evaluation's model to keep: `"last"`, or the best by a label-free
            validator of `dann.selection.VALIDATORS` (`"dev_risk"`, `"soft_neighborhood_density"`, ...).
    """

    steps: int
    batch_size: int
    log_every: int
    eval_every: int
    eval_batch_size: int = 1000
    seed: int = 0
    steps_per_call: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    progress: bool = True
    select: str = "last"

    def __post_init__(self):
        names = (
            "steps",
            "batch_size",
            "log_every",
            "eval_every",
            "eval_batch_size",
            "steps_per_call",
            "checkpoint_every",
            "keep_checkpoints",
        )
        for name in names:
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"trainer.{name} must be >= 1. Received: {name}={value}")
        if self.select not in SELECT_OPTIONS:
            raise ValueError(f"trainer.select must be one of {SELECT_OPTIONS}. Received: select={self.select!r}")


def call_lengths(settings: TrainerSettings) -> list[int]:
    """Updates per compiled call, in order, summing to `settings.steps`.

    Logging, evaluation and checkpoints happen between calls, so a call ends where one of
    them is due: each run of updates between two such steps is cut into calls of
    `steps_per_call`, the last of them shorter when the run is not a multiple of it.
    """
    intervals = (settings.log_every, settings.eval_every, settings.checkpoint_every)
    due = sorted({settings.steps, *(step for every in intervals for step in range(every, settings.steps, every))})
    lengths = []
    for start, end in zip([0, *due], due):
        full, rest = divmod(end - start, settings.steps_per_call)
        lengths += [settings.steps_per_call] * full + ([rest] if rest else [])
    return lengths


def fit(algorithm: Algorithm, datasets: DomainDatasets, settings: TrainerSettings, run_dir: str | Path | None = None) -> dict:
    """Trains `algorithm` on `datasets` and returns the final metrics.

    Before the first update, `verify_gradients` checks that every trainable variable
    gets a gradient and that the domain gradient reaches the features reversed. With
    `run_dir`, training resumes from the latest checkpoint there, if any, and Ctrl-C
    (`KeyboardInterrupt`) or SIGTERM (`Preempted`) saves a checkpoint before stopping.

    Args:
        algorithm: the model, optimizer and schedules to train.
        datasets: source and target splits.
        settings: steps, batch size, reporting, checkpointing and selection.
        run_dir: where to keep checkpoints, metrics and TensorBoard events (see the
            module docstring); `None` keeps nothing.

    Returns:
        `source_test_accuracy`, `target_test_accuracy` (of the selected model; `None` for an
        unlabelled target), `steps`,
        `selected_step`, `resumed_from_step`, `train_seconds` (this process's training,
        evaluations excluded), `eval_seconds` (its evaluations), and
        `input_wait_fraction`: the share of training time spent
        waiting for the next batch, i.e. how far the input pipeline falls behind the step,
        and `health`: the warnings of `dann.health` (each also logged once, when raised).
    """
    datasets = algorithm.training_datasets(datasets)
    check_finite_inputs(datasets)
    _check_fits(algorithm, settings)
    lengths = call_lengths(settings)
    calls = iter(stacked_calls(training_batches(datasets, settings.batch_size, settings.seed), lengths))
    health = HealthMonitor(RunContext(datasets.num_classes, settings.steps, algorithm.run_adaptation_steps()))
    run = _RunState(algorithm, calls, settings, None if run_dir is None else Path(run_dir), health)
    first = run.restore()
    progress = keras.utils.Progbar(settings.steps, verbose=1 if settings.progress and sys.stdout.isatty() else 0)
    progress.update(first)
    start = time.perf_counter()
    with _GracefulStop() as stop, run:
        for first_step, length in zip(itertools.accumulate([0, *lengths]), lengths):
            if first_step < first:  # resumed: a checkpoint's step always ends a call
                continue
            ((source_x, source_y), target_x), waited = _timed(next, calls)  # (length, batch_size, ...) each
            run.waiting_seconds += waited
            step_tensor = tf.constant(first_step, tf.int64)
            if first_step == 0:
                verify_gradients(algorithm, source_x[0], source_y[0], target_x[0], step_tensor)
            metrics = algorithm.update_steps(source_x, source_y, target_x, step_tensor)
            done = first_step + length
            progress.update(done)
            _log_evaluate_and_save(run, algorithm, datasets, metrics, done, progress)
            if stop.received is not None:
                if run.latest_step() != done:
                    run.save(done)
                stop.stop(done, run.run_dir)
    train_seconds = time.perf_counter() - start - run.evaluating_seconds
    algorithm.finish()
    return _final_results(run, algorithm, datasets, first, train_seconds)


def _check_fits(algorithm: Algorithm, settings: TrainerSettings) -> None:
    """Raises `ValueError` for settings the algorithm cannot train with, before any work."""
    replicas = algorithm.strategy.num_replicas_in_sync
    if settings.batch_size % replicas:
        raise ValueError(
            f"trainer.batch_size={settings.batch_size} does not split evenly over {replicas} replicas: "
            "choose a multiple of the number of replicas."
        )
    if settings.select != "last" and algorithm.classifier() is not algorithm.model:
        raise ValueError(
            f"trainer.select={settings.select} picks among the model's weights, but {type(algorithm).__name__} evaluates and "
            "deploys another network (a mean teacher: algorithm.teacher_decay > 0). Use trainer.select=last."
        )


def _log_evaluate_and_save(
    run: "_RunState", algorithm: Algorithm, datasets: DomainDatasets, metrics: dict[str, tf.Tensor], done: int, progress
) -> None:
    """After a compiled call ending at step `done`: logs, evaluates and saves a checkpoint where each is due."""
    settings = run.settings
    run.window.append(metrics)
    if is_due(done, settings.log_every, settings.steps):
        record = _mean(run.window)
        run.window.clear()
        _check_finite(record, done, run.latest_step(), run.health)
        run.write(done, {**record, "elapsed_seconds": process_seconds()})
        progress.update(done, [(key, record[key]) for key in ("loss", "label_loss", "domain_loss")])
        log.info("step %d/%d  %s", done, settings.steps, _format(record))
    if is_due(done, settings.eval_every, settings.steps):
        run.accuracies, seconds = _timed(_evaluate, algorithm, datasets, settings)
        run.consider(done, run.accuracies)
        run.evaluating_seconds += seconds
        run.write(done, {**run.accuracies, "eval_seconds": seconds, "elapsed_seconds": process_seconds()})
        log.info("step %d/%d  %s", done, settings.steps, _format(run.accuracies))
    if is_due(done, settings.checkpoint_every, settings.steps):
        last_call = {key: float(value) for key, value in metrics.items()}
        _check_finite(last_call, done, run.latest_step(), run.health)  # never save a diverged model
        run.save(done)


def _final_results(run: "_RunState", algorithm: Algorithm, datasets: DomainDatasets, first: int, train_seconds: float) -> dict:
    """`fit`'s return value: the selected model's accuracies (evaluated again if need be), steps and times."""
    settings, accuracies = run.settings, run.accuracies
    if settings.select != "last":
        run.load_selected()
    if settings.select != "last" or not accuracies:  # not accuracies: resumed from the final checkpoint
        accuracies, seconds = _timed(_evaluate, algorithm, datasets, settings)
        run.evaluating_seconds += seconds
    return {
        **{key: accuracies.get(key) for key in ("source_test_accuracy", "target_test_accuracy")},  # target: None when unlabelled
        "steps": settings.steps,
        "selected_step": run.selected_step(),
        "resumed_from_step": first,
        "train_seconds": train_seconds,
        "eval_seconds": run.evaluating_seconds,
        "input_wait_fraction": run.waiting_seconds / max(train_seconds, 1e-9),
        "health": [warning.as_dict() for warning in run.health.warnings],
    }


def _timed(function, *args):
    """`function(*args)` and the wall seconds it took."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def process_seconds() -> float:
    """Wall seconds since this process started: the `elapsed_seconds` of each `metrics.jsonl` record.

    On Linux, from the process's start time, so a command's figure includes its start-up
    (imports, data); elsewhere, seconds since `dann.loop` was imported. It counts per process:
    a resumed run starts again from its own start, and runs one after another in one process
    (a multirun, a notebook) continue the same count.
    """
    try:
        # Field 22 of /proc/self/stat, after the parenthesised command name: start time in clock ticks since boot.
        started = int(Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")
        seconds = time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        seconds = -1.0
    return seconds if seconds >= 0 else time.monotonic() - _IMPORTED


_IMPORTED = time.monotonic()


def is_due(done: int, every: int, steps: int) -> bool:
    """Whether something done every `every` steps (and at the end) is due after `done` of `steps` steps."""
    return done % every == 0 or done == steps


HEALTH_EXAMPLES = 1000


def _evaluate(algorithm: Algorithm, datasets: DomainDatasets, settings: TrainerSettings) -> dict[str, float]:
    """Test accuracies of both domains, every validator's score (`dann.selection`), and the label-free health figures
    (`dann.health`, `dann.metrics.domain_metrics`).

    Every figure but the target accuracy is label-free; the spread of target predictions is measured on at most
    `HEALTH_EXAMPLES` unlabelled target training inputs, the domain separability on held-out
    test inputs of both domains.
    """
    labelled = {"source": datasets.source_test, **({"target": datasets.target_test} if datasets.target_labelled else {})}
    figures = {
        f"{domain}_test_accuracy": evaluate_classifier(
            algorithm.predict, evaluation_batches(split, settings.eval_batch_size, datasets.normalize), datasets.num_classes
        )["accuracy"]
        for domain, split in labelled.items()
    }
    evidence = label_free_evidence(  # read and featurised once for every validator
        algorithm.model,
        datasets,
        algorithm.classifier(),
        figures["source_test_accuracy"],
        seed=settings.seed,
        prediction_examples=HEALTH_EXAMPLES,
    )
    figures.update(validator_scores(evidence))
    figures.update(prediction_health(evidence.target_logits))
    figures.update(domain_metrics(algorithm.model, datasets, HEALTH_EXAMPLES, seed=settings.seed))
    return figures


def layer_random_states(model: keras.Model) -> list[keras.Variable]:
    """The seed states of `model`'s random layers (dropout, Gaussian noise), in a fixed order.

    Keras keeps them among `model.variables` but not `model.weights`, and a checkpoint of the
    model leaves them out: without them a resumed run would draw its first steps' masks again.
    """
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


class _RunState:
    """What `fit` keeps: in the run directory checkpoints, metrics, TensorBoard events, the selected weights; in memory its tallies."""

    def __init__(self, algorithm: Algorithm, calls, settings: TrainerSettings, run_dir: Path | None, health: HealthMonitor):
        self.model = algorithm.model
        self.health = health
        self.settings = settings
        self.run_dir = run_dir
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_value = tf.Variable(math.nan, dtype=tf.float64, trainable=False)
        self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.selected_in_memory: list[np.ndarray] | None = None
        self.saved_step: int | None = None
        self.manager = self.writer = None
        self.window: list[dict[str, tf.Tensor]] = []  # the compiled calls' metrics since the last log line
        self.accuracies: dict[str, float] = {}  # of the latest evaluation
        self.waiting_seconds = self.evaluating_seconds = 0.0
        if run_dir is None:
            return
        algorithm_state = algorithm.checkpoint_state()
        random_states = layer_random_states(algorithm.model)
        contents = dict(
            model=algorithm.model,
            optimizer=algorithm.optimizer,
            step=self.step,
            data=calls,
            best_value=self.best_value,
            best_step=self.best_step,
            **({"algorithm": tf.train.Checkpoint(**algorithm_state)} if algorithm_state else {}),
        )
        checkpoint = tf.train.Checkpoint(**contents, **({"random_states": random_states} if random_states else {}))
        # What a checkpoint written before the seed states were saved holds: all the rest.
        self.without_random_states = tf.train.Checkpoint(**contents) if random_states else None
        self.manager = tf.train.CheckpointManager(checkpoint, run_dir / CHECKPOINT_DIR, max_to_keep=settings.keep_checkpoints)

    def restore(self) -> int:
        """Restores the newest checkpoint that loads, if any, and returns the step to continue from.

        A checkpoint that does not load (a data file truncated by a full disk or an
        interrupted copy, say) is reported by name and the one before it tried. Metrics
        written after the step continued from (by a process killed since) are dropped.

        Raises:
            RunDirectoryError: there are checkpoints and none loads; nothing was changed.
        """
        if self.manager is None:
            return 0
        step = self._restore_newest() if self.manager.checkpoints else 0
        if (self.run_dir / METRICS_FILE).exists():  # the lines after the step will be written again
            kept = [record for record in load_metrics(self.run_dir) if record["step"] <= step]
            write_atomically(self.run_dir / METRICS_FILE, "".join(json.dumps(record) + "\n" for record in kept))
            for record in kept:  # the monitor's state as it was; warnings raised before are not raised again
                self.health.observe(record)
        if step:
            log.info("resuming from the checkpoint of step %d in %s", step, self.manager.directory)
        return step

    def _restore_newest(self) -> int:
        for path in reversed(self.manager.checkpoints):
            try:
                self._restore(path)
                break
            except (tf.errors.OpError, IndexError, ValueError, AssertionError) as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                log.warning("checkpoint %s does not load (%s): trying the one before it", path, reason)
        else:
            raise RunDirectoryError(
                f"no checkpoint in {self.manager.directory} loads (tried {', '.join(self.manager.checkpoints)}); the run "
                "directory is left as it is. Restore the checkpoints from a copy, or start again with trainer.overwrite=true."
            )
        self.saved_step = int(self.step.numpy())
        return self.saved_step

    def _restore(self, path: str) -> None:
        if self.without_random_states is None or any(name.startswith("random_states/") for name, _ in tf.train.list_variables(path)):
            self.manager.checkpoint.restore(path).assert_existing_objects_matched()
            return
        self.without_random_states.restore(path).assert_existing_objects_matched()
        log.warning(
            "checkpoint %s holds no seed states of the dropout and noise layers (an older dann wrote it): resuming, "
            "but these layers draw their first steps' masks again, so the run will differ from an uninterrupted one",
            path,
        )

    def latest_step(self) -> int | None:
        """The step of the newest checkpoint saved or restored, `None` before any."""
        return self.saved_step

    def write(self, step: int, record: dict[str, float]) -> None:
        """Appends `record` to the metrics and TensorBoard, and logs any health warning it raises."""
        for warning in self.health.observe({"step": step, **record}):
            log.warning("health: %s", warning)
        if self.run_dir is None:
            return
        with open(self.run_dir / METRICS_FILE, "a") as stream:
            stream.write(json.dumps({"step": step, **record}) + "\n")
        if self.writer is None:  # created at the first record: a run that fails to resume changes nothing
            self.writer = tf.summary.create_file_writer(str(self.run_dir / TENSORBOARD_DIR))
        with self.writer.as_default(step=step):
            for key, value in record.items():
                tf.summary.scalar(key, value)

    def consider(self, step: int, figures: dict[str, float]) -> None:
        """Keeps the model's weights if the selection criterion prefers them to the best so far."""
        criterion = self.settings.select
        if criterion == "last" or not VALIDATORS[criterion].improves(figures[criterion], float(self.best_value.numpy())):
            return
        self.best_value.assign(figures[criterion])
        self.best_step.assign(step)
        if self.run_dir is None:
            self.selected_in_memory = self.model.get_weights()
            return
        temporary = self.run_dir / f"{SELECTED_WEIGHTS_FILE}.tmp.weights.h5"
        self.model.save_weights(temporary)
        os.replace(temporary, self.run_dir / SELECTED_WEIGHTS_FILE)

    def load_selected(self) -> None:
        if self.selected_in_memory is not None:
            self.model.set_weights(self.selected_in_memory)
        elif self.run_dir is not None and (self.run_dir / SELECTED_WEIGHTS_FILE).exists():
            self.model.load_weights(self.run_dir / SELECTED_WEIGHTS_FILE)

    def selected_step(self) -> int:
        return int(self.best_step.numpy()) if self.settings.select != "last" else self.settings.steps

    def save(self, step: int) -> None:
        if self.manager is not None:
            self.step.assign(step)
            self.manager.save(checkpoint_number=step)
            self.saved_step = step

    def __enter__(self) -> "_RunState":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.writer is not None:
            self.writer.close()


class _GracefulStop:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request that the loop honours between compiled calls.

    The update in flight completes, so the checkpoint saved then is consistent (model,
    optimizer, step and data position agree); a second signal stops at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: signal.Signals | None = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        log.warning("%s: stopping after the current call and saving a checkpoint (send it again to stop now)", self.received.name)

    def stop(self, step: int, saved_in: Path | None) -> None:
        """Raises what the received signal means: `KeyboardInterrupt` for SIGINT, `Preempted` for SIGTERM."""
        where = "" if saved_in is None else f": checkpoint saved in {saved_in}; run the same command again to resume"
        if self.received == signal.SIGTERM:
            raise Preempted(f"SIGTERM at step {step}{where}")
        log.warning("interrupted at step %d%s", step, where)
        raise KeyboardInterrupt

    def __enter__(self) -> "_GracefulStop":
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)


def _mean(window: list[dict[str, tf.Tensor]]) -> dict[str, float]:
    return {key: float(np.mean([float(metrics[key]) for metrics in window])) for key in window[0]}


def _check_finite(record: dict[str, float], step: int, last_checkpoint: int | None, health: HealthMonitor) -> None:
    bad = [key for key in ("label_loss", "domain_loss", "loss") if key in record and not math.isfinite(record[key])]
    if bad:
        kept = "no checkpoint was saved before" if last_checkpoint is None else f"the last good checkpoint (step {last_checkpoint}) is kept"
        findings = health.latest_findings()
        raise NonFiniteLossError(
            f"{', '.join(bad)} became {record[bad[0]]} by step {step}; training stopped and {kept}. "
            "Lower optimizer.lr, check the inputs for NaNs, or lengthen the lambda ramp (schedule.adaptation)."
            + (f" At the last evaluation (step {health.evaluations[-1]['step']}): {'; '.join(findings)}." if findings else "")
        )


def _format(record: dict[str, float]) -> str:
    return "  ".join(f"{key}={value:.4g}" for key, value in record.items())
