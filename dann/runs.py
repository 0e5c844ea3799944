"""A run directory: the files `dann.experiment.train` and the loop write there, and how they are read back.

    config.yaml           the resolved config (`load_config`)
    precision.json        the precision the run trains in, and why (`dann.precision.PrecisionChoice`): kept, so
                          that a resumed run trains on in it
    metrics.jsonl         one JSON line per logging or evaluation interval, keyed by `step` (`load_metrics`),
                          with its wall time (`WALL_CLOCK_KEYS`)
    tensorboard/          the same figures as TensorBoard events
    checkpoints/          `tf.train.CheckpointManager` checkpoints (`dann.loop`)
    selected.weights.h5   the weights `trainer.select` prefers so far
    model.keras           the trained `AdaptationModel` (`load_model`)
    results.json          final figures; written last, it marks the run finished (`load_results`)
    learning_curves.png, health.png, embedding.png   figures (`dann.figures`)
    export/               the SavedModel of `python -m dann.export`
    eval_<dataset>_<split>.json          figures of `python -m dann.evaluate` (`evaluation_file`)
    run.lock              held by the one process training the run (`run_lock`), removed when it ends

Free of Hydra's app machinery: every command and script reads runs through this module.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import keras
from omegaconf import DictConfig, OmegaConf

from dann.data import ImagePreprocessing

CONFIG_FILE = "config.yaml"
PRECISION_FILE = "precision.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_DIR = "checkpoints"
SELECTED_WEIGHTS_FILE = "selected.weights.h5"
MODEL_FILE = "model.keras"
RESULTS_FILE = "results.json"
SKIPPED_FILES = "skipped_files.txt"
LEARNING_CURVES_FILE = "learning_curves.png"
HEALTH_FILE = "health.png"
EMBEDDING_FILE = "embedding.png"
EXPORT_DIR = "export"
RUN_FILES = (
    CONFIG_FILE, PRECISION_FILE, METRICS_FILE, TENSORBOARD_DIR, CHECKPOINT_DIR, SELECTED_WEIGHTS_FILE, MODEL_FILE, RESULTS_FILE,
    LEARNING_CURVES_FILE, HEALTH_FILE, EMBEDDING_FILE, EXPORT_DIR, SKIPPED_FILES,
)  # fmt: skip
EVALUATION_FILES = "eval_*.json"
LOCK_FILE = "run.lock"
# The wall-clock figures of metrics.jsonl: the only part of it that differs between two deterministic runs of a config.
WALL_CLOCK_KEYS = ("elapsed_seconds", "eval_seconds")
# Settings that do not change what is computed: a run may resume with other values of them, and
# runs that differ only in them are runs of one setting (`scripts/collect_results.py`).
NOT_COMPARED = (
    "trainer.progress", "trainer.overwrite", "trainer.plots", "trainer.eval_batch_size", "trainer.steps_per_call",
    "cache_dir", "data.cache_dir",  # where dann keeps what it can compute again
)  # fmt: skip


log = logging.getLogger(__name__)


class RunDirectoryError(ValueError):
    """The run directory holds a run that the requested one cannot continue."""


class RunLockedError(RunDirectoryError):
    """Another process is training the run (`run_lock`)."""


def load_config(run_dir: str | Path) -> DictConfig:
    """The resolved config a run was trained with."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a `python -m dann.train` run directory?")
    return OmegaConf.load(path)


def load_model(run_dir: str | Path) -> keras.Model:
    """The trained `AdaptationModel` of a finished run; `model(images)` gives class logits."""
    path = Path(run_dir) / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a finished `python -m dann.train` run directory?")
    return keras.saving.load_model(path)


def load_metrics(run_dir: str | Path) -> list[dict]:
    """The records of a finished or running run's `metrics.jsonl`, in order (training and evaluation records).

    A line cut short (being written, or left by a crash or a full disk) is left out with a warning.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a `python -m dann.train` run directory that has logged?")
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("left out an incomplete line of %s: %r", path, line[:80])
    return records


def load_results(run_dir: str | Path) -> dict | None:
    """`results.json` of a finished run, or `None` while it is unfinished."""
    path = Path(run_dir) / RESULTS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def load_preprocessing(cfg: DictConfig) -> ImagePreprocessing | None:
    """The image preprocessing of a run's config (`load_config`), or `None` for data that needs none (vectors)."""
    if "preprocessing" not in cfg.data:
        return None
    settings = OmegaConf.to_container(cfg.data.preprocessing, resolve=True)
    settings.pop("_target_", None)  # always ImagePreprocessing: what the data builders take
    return ImagePreprocessing(**settings)


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


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Holds `run_dir/run.lock` while the block runs, so that one process at a time trains the run.

    The lock is the operating system's (`flock`): it ends with its process, however that
    ends, and a lock file left by a dead process is taken over with a warning. The file
    names the holder (process id and host). `flock` locks may not reach across hosts on
    some network file systems.

    Raises:
        RunLockedError: another process holds the lock; the message names it.
    """
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    while True:
        stream = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT), "r+")
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = stream.read().strip() or "another process"
            stream.close()
            raise RunLockedError(
                f"{run_dir} is being trained by {holder} ({path} is locked). Wait for it to finish, stop it, or pick "
                "another directory (hydra.run.dir=...)."
            ) from None
        if path.exists() and path.stat().st_ino == os.fstat(stream.fileno()).st_ino:
            break
        stream.close()  # the holder removed the file as it finished: lock the new one
    previous = stream.read().strip()
    if previous:
        log.warning("%s was left by %s, which no longer runs: taking it over", path, previous)
    stream.seek(0)
    stream.truncate()
    stream.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    stream.flush()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        stream.close()
        if created and not any(run_dir.iterdir()):  # nothing was written: leave no directory either
            run_dir.rmdir()


def remove_run_files(run_dir: Path) -> None:
    """Deletes what a run, its figures, exports and evaluations wrote into `run_dir`, and nothing else."""
    for path in [*(run_dir / name for name in RUN_FILES), *run_dir.glob(EVALUATION_FILES)]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file, so a crash leaves the old file or the new one, never half.

    The temporary file is the process's own: of two processes writing `path` at once, the last whole file wins.
    """
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _comparable(cfg: DictConfig) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_COMPARED:
        *parents, name = key.split(".")
        node = config
        for parent in parents:
            node = node.get(parent) or {}
        node.pop(name, None)
    return config


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted(set(old) | set(new)) for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"]
