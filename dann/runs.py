"""A run directory: the files `dann.train` and the loop write there, and how they are read back.

    config.yaml           the resolved config (`load_config`)
    metrics.jsonl         one JSON line per logging or evaluation interval, keyed by `step` (`load_metrics`)
    tensorboard/          the same figures as TensorBoard events
    checkpoints/          `tf.train.CheckpointManager` checkpoints (`dann.loop`)
    selected.weights.h5   the weights `trainer.select` prefers so far
    model.keras           the trained `DANNModel` (`load_model`)
    results.json          final figures; written last, it marks the run finished (`load_results`)
    learning_curves.png, health.png, embedding.png   figures (`dann.figures`)
    export/               the SavedModel of `python -m dann.export`
    eval_<dataset>_<split>.json          figures of `python -m dann.evaluate` (`evaluation_file`)

Free of Hydra's app machinery: every command and script reads runs through this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import keras
from omegaconf import DictConfig, OmegaConf

from dann.data import ImagePreprocessing

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_DIR = "checkpoints"
SELECTED_WEIGHTS_FILE = "selected.weights.h5"
MODEL_FILE = "model.keras"
RESULTS_FILE = "results.json"
LEARNING_CURVES_FILE = "learning_curves.png"
HEALTH_FILE = "health.png"
EMBEDDING_FILE = "embedding.png"
EXPORT_DIR = "export"
RUN_FILES = (
    CONFIG_FILE, METRICS_FILE, TENSORBOARD_DIR, CHECKPOINT_DIR, SELECTED_WEIGHTS_FILE, MODEL_FILE, RESULTS_FILE,
    LEARNING_CURVES_FILE, HEALTH_FILE, EMBEDDING_FILE, EXPORT_DIR,
)  # fmt: skip
EVALUATION_FILES = "eval_*.json"
# Settings that do not change what is computed: a run may resume with other values.
NOT_COMPARED = ("progress", "overwrite", "plots")


class RunDirectoryError(ValueError):
    """The run directory holds a run that the requested one cannot continue."""


def load_config(run_dir: str | Path) -> DictConfig:
    """The resolved config a run was trained with."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a `python -m dann.train` run directory?")
    return OmegaConf.load(path)


def load_model(run_dir: str | Path) -> keras.Model:
    """The trained `DANNModel` of a finished run; `model(images)` gives class logits."""
    path = Path(run_dir) / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a finished `python -m dann.train` run directory?")
    return keras.saving.load_model(path)


def load_metrics(run_dir: str | Path) -> list[dict]:
    """The records of a finished or running run's `metrics.jsonl`, in order (training and evaluation records)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a `python -m dann.train` run directory that has logged?")
    return [json.loads(line) for line in path.read_text().splitlines()]


def load_results(run_dir: str | Path) -> dict | None:
    """`results.json` of a finished run, or `None` while it is unfinished."""
    path = Path(run_dir) / RESULTS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def load_preprocessing(cfg: DictConfig) -> ImagePreprocessing | None:
    """The image preprocessing of a run's config (`load_config`), or `None` for data that needs none (vectors)."""
    from hydra.utils import instantiate  # only here, so that `import dann` stays free of Hydra

    return instantiate(cfg.data.preprocessing) if "preprocessing" in cfg.data else None


def evaluation_file(run_dir: str | Path, dataset: str, split: str) -> Path:
    """Where `python -m dann.evaluate` writes the figures of `dataset`/`split` (`/` and other symbols become `_`)."""
    parts = (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") for name in (dataset, split))
    return Path(run_dir) / "eval_{}_{}.json".format(*parts)


def check_run_directory(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The results of the finished run of `cfg` in `run_dir`, or `None` if it is unfinished or new.

    Raises:
        RunDirectoryError: `run_dir` holds a run of another config.
    """
    if not (run_dir / CONFIG_FILE).exists():
        return None
    differences = _differences(_comparable(load_config(run_dir)), _comparable(cfg))
    if differences:
        raise RunDirectoryError(
            f"{run_dir} holds a run of another config ({'; '.join(differences[:5])}). Pick another directory "
            "(hydra.run.dir=...), or pass trainer.overwrite=true to discard that run and start again."
        )
    return load_results(run_dir)


def remove_run_files(run_dir: Path) -> None:
    """Deletes what a run, its figures, exports and evaluations wrote into `run_dir`, and nothing else."""
    for path in [*(run_dir / name for name in RUN_FILES), *run_dir.glob(EVALUATION_FILES)]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file, so a crash leaves the old file or the new one, never half."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _comparable(cfg: DictConfig) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_COMPARED:
        config.get("trainer", {}).pop(key, None)
    return config


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted(set(old) | set(new)) for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"]
