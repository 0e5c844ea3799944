"""`python -m dann.train +experiment=NAME key=value ...`: train, evaluate, and save a run.

A finished run directory (`hydra.run.dir`) holds:
  config.yaml     the resolved config
  metrics.jsonl   one JSON line per logging or evaluation interval (and tensorboard/, the same
                  as TensorBoard events; checkpoints/, see `dann.loop`)
  results.json    final accuracies, steps, train_seconds, seed, and domain separability
                  (domain classifier accuracy, proxy A-distance of inputs and of features)
  model.keras     the trained `DANNModel`; load it with `dann.load_model(run_dir)`
  *.png           learning curves and feature embeddings (`dann.plot`), with the `plot` extra

Running the same command with the same `hydra.run.dir` again resumes from the last
checkpoint, or, if the run finished, only reports its results. A directory that holds a
run of another config is refused (`trainer.overwrite=true` discards it). A run that fails
before its first checkpoint leaves no run directory behind.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import hydra
import keras
import tensorflow as tf
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from dann.config import build_algorithm, build_datasets, build_model, check_algorithm, loop_settings, register_configs
from dann.devices import build_strategy
from dann.diagnostics import GradientCoverageError
from dann.evaluation import domain_metrics
from dann.loop import CHECKPOINT_DIR, METRICS_FILE, SELECTED_WEIGHTS_FILE, TENSORBOARD_DIR, NonFiniteLossError, fit, write_atomically

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.keras"
RESULTS_FILE = "results.json"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, TENSORBOARD_DIR, CHECKPOINT_DIR, SELECTED_WEIGHTS_FILE, MODEL_FILE, RESULTS_FILE)
# Settings that do not change what is computed: a run may resume with other values.
NOT_COMPARED = ("progress", "overwrite", "plots")


class RunDirectoryError(ValueError):
    """The run directory holds a run that the requested one cannot continue."""


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Trains as `cfg` says (resuming what `run_dir` holds), writes the run's files, and returns `results.json`'s content."""
    settings = loop_settings(cfg)  # validates before anything is built
    check_algorithm(cfg)
    run_dir = Path(run_dir)
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
    with strategy.scope():
        model = build_model(cfg, datasets)
    algorithm = build_algorithm(cfg, model, strategy)
    datasets = algorithm.training_datasets(datasets)  # as fit sees them, for the domain metrics and plots
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True))
    try:
        results = fit(algorithm, datasets, settings, run_dir)
    except BaseException:
        if not (run_dir / CHECKPOINT_DIR / "checkpoint").exists():  # nothing to resume: leave nothing behind
            remove_run_files(run_dir)
        raise
    model.save(run_dir / MODEL_FILE)
    results["seed"] = cfg.seed
    results.update(domain_metrics(model, datasets, seed=cfg.seed))
    write_atomically(run_dir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")  # last: it marks the run finished
    log.info("results in %s: %s", run_dir, results)
    if cfg.trainer.plots:
        _write_plots(run_dir, datasets)
    return results


def check_run_directory(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The results of the finished run of `cfg` in `run_dir`, or `None` if it is unfinished or new.

    Raises:
        RunDirectoryError: `run_dir` holds a run of another config.
    """
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        return None
    differences = _differences(_comparable(OmegaConf.load(config_path)), _comparable(cfg))
    if differences:
        raise RunDirectoryError(
            f"{run_dir} holds a run of another config ({'; '.join(differences[:5])}). Pick another directory "
            "(hydra.run.dir=...), or pass trainer.overwrite=true to discard that run and start again."
        )
    results_path = run_dir / RESULTS_FILE
    return json.loads(results_path.read_text()) if results_path.exists() else None


def remove_run_files(run_dir: Path) -> None:
    """Deletes what `train` writes into `run_dir`, and nothing else."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def load_model(run_dir: str | Path) -> keras.Model:
    """The trained `DANNModel` of a finished run; `model(images)` gives class logits."""
    path = Path(run_dir) / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a finished `python -m dann.train` run directory?")
    return keras.saving.load_model(path)


def _comparable(cfg: DictConfig) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_COMPARED:
        config.get("trainer", {}).pop(key, None)
    return config


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted(set(old) | set(new)) for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"]


def _write_plots(run_dir: Path, datasets) -> None:
    try:
        from dann.plot import plot_run
    except ImportError:
        log.info("no plots: install the plot extra (pip install 'dann[plot]'), then run python -m dann.plot run_dir=%s", run_dir)
        return
    plot_run(run_dir, datasets=datasets)


# Errors whose message says what to fix: shown without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, InstantiationException, NonFiniteLossError, GradientCoverageError)

register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    logging.getLogger("absl").setLevel(logging.WARNING)  # TensorFlow's checkpointing chatter
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        results = train(cfg, run_dir)
    except (*USER_ERRORS, KeyboardInterrupt) as error:
        if not (run_dir / CONFIG_FILE).exists():
            _remove_hydra_files(run_dir)
        if isinstance(error, KeyboardInterrupt):
            sys.exit(130)
        log.error("%s: %s", type(error).__name__, error)
        sys.exit(1)
    return results["target_test_accuracy"]  # what a Hydra sweeper would optimise


def _remove_hydra_files(run_dir: Path) -> None:
    """Removes the files Hydra wrote for a run that wrote nothing, and the directory if it is then empty."""
    if HydraConfig.get().output_subdir:
        shutil.rmtree(run_dir / HydraConfig.get().output_subdir, ignore_errors=True)
    (run_dir / f"{HydraConfig.get().job.name}.log").unlink(missing_ok=True)
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


if __name__ == "__main__":
    main()
