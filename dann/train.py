"""`python -m dann.train +experiment=NAME key=value ...`: train, evaluate, and save a run in `hydra.run.dir`.

Parses the command line with Hydra and runs `dann.experiment.train`, which says what a run
directory holds and how a run resumes. A failure a user can act on (a config error, missing
data, a full disk, a NaN loss) ends with one line saying what to do and exit status 1 (75 when
preempted), and leaves no run directory if nothing was trained.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
import tensorflow as tf
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dann.config import CONFIG_PATH, register_configs, self_training_note
from dann.experiment import failure_message, train
from dann.loop import EXIT_PREEMPTED, Preempted
from dann.runs import CONFIG_FILE, TENSORBOARD_DIR, RunLockedError

log = logging.getLogger(__name__)

register_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float:
    logging.getLogger("absl").setLevel(logging.WARNING)  # TensorFlow's checkpointing chatter
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    note = self_training_note(cfg, HydraConfig.get().runtime.choices)
    if note:
        log.info("%s", note)
    try:
        results = train(cfg, run_dir)
        write_hyperparameters(run_dir, command_line_settings(cfg, HydraConfig.get().overrides.task))
    except BaseException as error:
        if not (run_dir / CONFIG_FILE).exists() and not isinstance(error, RunLockedError):  # the run left nothing
            _remove_hydra_files(run_dir)
        if isinstance(error, KeyboardInterrupt):
            sys.exit(130)
        message = failure_message(error, cfg)
        if message is None:  # a bug: the traceback helps
            raise
        log.error("%s", message)
        sys.exit(EXIT_PREEMPTED if isinstance(error, Preempted) else 1)
    return results["target_test_accuracy"]  # what a Hydra sweeper would optimise


def command_line_settings(cfg: DictConfig, overrides: list[str]) -> dict[str, bool | int | float | str]:
    """The settings a run's command line chose (`optimizer.lr=0.01`, `+experiment=moons`), by key, with their resolved values."""
    settings = {}
    for override in overrides:
        key, _, text = override.lstrip("+~").partition("=")
        value = OmegaConf.select(cfg, key, default=None)
        settings[key] = value if isinstance(value, (bool, int, float, str)) else text
    return settings


def write_hyperparameters(run_dir: Path, hyperparameters: dict[str, bool | int | float | str]) -> None:
    """Records `hyperparameters` for TensorBoard's HParams dashboard beside the run's metrics.

    `tensorboard --logdir multirun/...` then lists a sweep's runs in one table, with the
    final value of each metric the loop logged (`target_test_accuracy`, ...).
    """
    from tensorboard.plugins.hparams import api as hparams_api  # TensorBoard comes with TensorFlow

    with tf.summary.create_file_writer(str(run_dir / TENSORBOARD_DIR)).as_default():
        hparams_api.hparams(hyperparameters, trial_id=str(run_dir))


def _remove_hydra_files(run_dir: Path) -> None:
    """Removes the files Hydra wrote for a run that wrote nothing, and the directory if it is then empty."""
    if HydraConfig.get().output_subdir:
        shutil.rmtree(run_dir / HydraConfig.get().output_subdir, ignore_errors=True)
    (run_dir / f"{HydraConfig.get().job.name}.log").unlink(missing_ok=True)
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


if __name__ == "__main__":
    main()
