"""One training run: `train(cfg, run_dir)` trains, evaluates and saves what `python -m dann.train` writes.

A finished run directory (see `dann.runs`) holds:
  config.yaml     the resolved config
  precision.json  the precision it trains in and why; a resumed run keeps it
  metrics.jsonl   one JSON line per logging or evaluation interval (and tensorboard/, the same
                  as TensorBoard events; checkpoints/, see `dann.loop`)
  results.json    final accuracies (and the splits they are of), steps, train_seconds, seed, precision (and
                  precision_choice: why, and what auto measured), and domain separability
                  (domain classifier accuracy, proxy A-distance of inputs and of features)
  model.keras     the trained `AdaptationModel`; load it with `dann.load_model(run_dir)`
  skipped_files.txt  input files left out as unreadable, one `path<TAB>reason` per line
                  (image folders with data.skip_unreadable=true; only when there are any)
  *.png           learning curves and feature embeddings (`dann.plot`), with the `plot` extra

Running the same config with the same run directory again resumes from the last
checkpoint, or, if the run finished, only reports its results. A directory that holds a
run of another config is refused (`trainer.overwrite=true` discards it). A run that fails
before its first checkpoint leaves no run directory behind.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import re
from pathlib import Path

import keras
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

from dann.config import (
    USER_ERRORS,
    build_algorithm,
    build_datasets,
    build_model,
    check_algorithm,
    choose_run_precision,
    trainer_settings,
    with_plain_choices,
)
from dann.devices import build_strategy
from dann.loop import Preempted, fit
from dann.metrics import domain_metrics
from dann.precision import PrecisionChoice
from dann.runs import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    MODEL_FILE,
    PRECISION_FILE,
    RESULTS_FILE,
    SKIPPED_FILES,
    check_run_directory,
    remove_run_files,
    run_lock,
    write_atomically,
)

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Trains as `cfg` says (resuming what `run_dir` holds), writes the run's files, and returns `results.json`'s content."""
    cfg = with_plain_choices(cfg)
    settings = trainer_settings(cfg)  # validates before anything is built
    check_algorithm(cfg)
    run_dir = Path(run_dir)
    with run_lock(run_dir):
        return _train_locked(cfg, settings, run_dir)


def _train_locked(cfg: DictConfig, settings, run_dir: Path) -> dict:
    if cfg.trainer.overwrite:
        remove_run_files(run_dir)
    previous = check_run_directory(cfg, run_dir)
    if previous is not None:
        log.info("%s already holds this finished run; not training again. Results: %s", run_dir, previous)
        return previous
    strategy = build_strategy(cfg.trainer.strategy, cfg.trainer.cpu_devices)
    if cfg.trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.seed)
    datasets = build_datasets(cfg)
    precision = _run_precision(cfg, datasets, run_dir)
    log.info("%s", precision)
    with strategy.scope():
        model = build_model(cfg, datasets, precision.policy)
    algorithm = build_algorithm(cfg, model, strategy)
    datasets = algorithm.training_datasets(datasets)  # as fit sees them, for the domain metrics and plots
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True))
    write_atomically(run_dir / PRECISION_FILE, json.dumps(precision.as_dict(), indent=2) + "\n")
    if datasets.skipped_files:
        lines = "".join(f"{path}\t{reason}\n" for path, reason in datasets.skipped_files.items())
        write_atomically(run_dir / SKIPPED_FILES, lines)
        log.warning(
            "skipped %d unreadable input files (data.skip_unreadable=true): listed in %s", len(lines.splitlines()), run_dir / SKIPPED_FILES
        )
    try:
        results = fit(algorithm, datasets, settings, run_dir)
    except BaseException:
        if not (run_dir / CHECKPOINT_DIR / "checkpoint").exists():  # nothing to resume: leave nothing behind
            remove_run_files(run_dir)
        raise
    model.save(run_dir / MODEL_FILE)
    results["seed"] = cfg.seed
    results["precision"] = precision.policy
    results["precision_choice"] = precision.as_dict()
    results.update(datasets.splits)  # which splits the accuracies are of
    if datasets.skipped_files:
        results["skipped_files"] = len(datasets.skipped_files)
    results.update(domain_metrics(model, datasets, seed=cfg.seed, pad_classifiers=_pad_classifiers()))
    write_atomically(run_dir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")  # last: it marks the run finished
    log.info("results in %s: %s", run_dir, results)
    if cfg.trainer.plots:
        write_plots(run_dir, datasets)
    return results


def _run_precision(cfg: DictConfig, datasets, run_dir: Path) -> PrecisionChoice:
    """The precision a run started in, when it resumes (`auto` could measure otherwise now); else chosen now."""
    kept = run_dir / PRECISION_FILE
    if kept.exists() and (run_dir / CHECKPOINT_DIR / "checkpoint").exists():
        return PrecisionChoice(**json.loads(kept.read_text()))
    return choose_run_precision(cfg, datasets)


def _pad_classifiers() -> tuple[str, ...]:
    """The proxy A-distance's closed form, and the linear SVM of published figures when scikit-learn is installed."""
    return ("ridge", "linear_svm") if importlib.util.find_spec("sklearn") else ("ridge",)


def write_plots(run_dir: Path, datasets) -> None:
    """The run's figures (`dann.figures.plot_run`), or a line on how to get them without the plot extra."""
    try:
        from dann.figures import plot_run  # needs the plot extra
    except ModuleNotFoundError as error:
        if error.name not in PLOT_EXTRA:
            raise
        log.info("no plots: install the plot extra (pip install 'dann[plot]'), then run python -m dann.plot run_dir=%s", run_dir)
        return
    plot_run(run_dir, datasets=datasets)


PLOT_EXTRA = ("matplotlib", "sklearn")  # the top-level modules of the plot extra


def failure_message(error: BaseException, cfg: DictConfig) -> str | None:
    """One line on why training stopped and what to do, for the failures a user can act on; `None` for others."""
    if _is_disk_full(error):
        return (
            f"no space left on the device while writing {_written_file(error)}. The checkpoints written before are kept: "
            "free some space and run the same command again to resume."
        )
    if isinstance(error, tf.errors.ResourceExhaustedError):
        return (
            f"out of memory ({str(error).strip().splitlines()[0][:200]}). Lower trainer.batch_size "
            f"(now {cfg.trainer.batch_size}), trainer.eval_batch_size (now {cfg.trainer.eval_batch_size}) or "
            f"trainer.steps_per_call (now {cfg.trainer.steps_per_call})."
        )
    if isinstance(error, (*USER_ERRORS, Preempted)):
        return f"{type(error).__name__}: {error}"
    return None


def _written_file(error: BaseException) -> str:
    """The file a failed write names: `OSError.filename`, or the path in a TensorFlow file system message."""
    if isinstance(error, OSError):
        return str(error.filename)
    path = re.search(r"(\S+); No space left on device", str(error))
    return path.group(1) if path else str(error).strip().splitlines()[0]


def _is_disk_full(error: BaseException) -> bool:
    """Whether `error` is a write that failed for want of space (Python's `OSError`, or TensorFlow's file system)."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return isinstance(error, tf.errors.OpError) and "No space left on device" in str(error)
