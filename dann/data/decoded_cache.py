"""Prepared examples saved once with `tf.data.Dataset.save`, so later runs load them instead of decoding again.

Reading a TFDS split decodes every example one by one: about 5 s per 60,000 MNIST images on
two cores, paid again at the start of every run. Loading the saved, already prepared
examples takes about 1 s.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import tensorflow as tf

# Bump when what is saved changes meaning, so older entries are no longer read.
CACHE_FORMAT = 1


def cached(dataset: tf.data.Dataset, cache_dir: str | Path | None, key: dict, name: str) -> tf.data.Dataset:
    """`dataset`, saved under `cache_dir` the first time `key` is seen and loaded from there afterwards.

    Args:
        dataset: a finite dataset; it is iterated once, in full, when first saved.
        cache_dir: where saved datasets live, e.g. `~/.cache/dann`; `None` returns `dataset` as it is.
        key: everything that decides `dataset`'s elements, JSON-serialisable (the dataset's
            name, version and files, the split, the preprocessing): a different key is a
            different entry, never a stale one.
        name: a readable prefix of the entry's directory name, e.g. `"mnist-train"`.

    Returns:
        A dataset with the same elements in the same order. When `cache_dir` cannot be
        written, a warning says so and `dataset` itself is returned.

    Raises:
        ValueError: when a saved entry holds another number of examples than `dataset`
            (a damaged entry), naming the directory to delete.
    """
    if cache_dir is None:
        return dataset
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser()
    entry = root / f"{_slug(name)}-{digest}"
    if not entry.is_dir():
        try:
            root.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=f"{entry.name}.partial-", dir=root))
        except OSError as error:
            warnings.warn(f"Not caching decoded examples: {error}. Set data.cache_dir to a writable directory, or to null.", stacklevel=2)
            return dataset
        _remove_abandoned(root, entry.name)
        # Saved under a temporary name and renamed, so an interrupted or concurrent run never
        # leaves a half-written entry under the final name.
        try:
            _save_in_parts(dataset, partial)
        except BaseException:  # an input error or Ctrl-C: nothing half-written stays behind
            shutil.rmtree(partial, ignore_errors=True)
            raise
        try:
            partial.rename(entry)
        except OSError:  # another run saved the same entry first
            shutil.rmtree(partial, ignore_errors=True)
    parts = [tf.data.Dataset.load(str(part), element_spec=dataset.element_spec) for part in sorted(entry.iterdir())]
    loaded = functools.reduce(tf.data.Dataset.concatenate, parts, dataset.take(0))
    expected, found = int(dataset.cardinality()), int(loaded.cardinality())
    if expected >= 0 and found >= 0 and expected != found:
        raise ValueError(
            f"The decoded-example cache {entry} holds {found} examples where {name} has {expected}: delete {entry} to rebuild it."
        )
    return loaded


def _save_in_parts(dataset: tf.data.Dataset, directory: Path, part_bytes: int = 2**28) -> None:
    """Saves `dataset` as numbered parts of about `part_bytes`, in order.

    Each part is gathered in memory before `Dataset.save` sees it: `save` deadlocks when its
    input raises (TensorFlow issue 61736), and a corrupt file must raise, here, in Python.
    """
    element_bytes = sum(
        spec.shape.num_elements() * spec.dtype.size for spec in tf.nest.flatten(dataset.element_spec) if spec.shape.is_fully_defined()
    )
    part_size = max(1, part_bytes // max(element_bytes, 1))
    if int(dataset.cardinality()) > 0:  # a batch size far above the count costs seconds of allocation
        part_size = min(part_size, int(dataset.cardinality()))
    for index, part in enumerate(dataset.batch(part_size)):
        # One shard per part keeps the examples' order.
        tf.data.Dataset.from_tensor_slices(part).save(str(directory / f"{index:06d}"), shard_func=lambda *element: tf.constant(0, tf.int64))


def _remove_abandoned(root: Path, entry_name: str, older_than_s: float = 3600.0) -> None:
    """Deletes partial saves of `entry_name` that no run has written to for `older_than_s` (interrupted runs'):
    a running save adds a part every few seconds, which renews its directory's time."""
    for partial in root.glob(f"{entry_name}.partial-*"):
        if time.time() - partial.stat().st_mtime > older_than_s:
            shutil.rmtree(partial, ignore_errors=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
