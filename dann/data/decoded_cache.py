"""Prepared examples saved once with `tf.data.Dataset.save`, so later runs load them instead of decoding again.

Reading a TFDS split decodes every example one by one: about 5 s per 60,000 MNIST images on
two cores, paid again at the start of every run. Loading the saved, already prepared
examples takes about 1 s.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import shutil
import tempfile
import time
import warnings
import zlib
from pathlib import Path
from typing import Callable

import tensorflow as tf

from dann.data.prepare import CorruptDataError

# Bump when what is saved changes meaning, so older entries are no longer read.
CACHE_FORMAT = 2
MANIFEST = "manifest.json"


def cached(
    dataset: tf.data.Dataset,
    cache_dir: str | Path | None,
    key: dict,
    name: str,
    before_save: Callable[[], None] | None = None,
) -> tf.data.Dataset:
    """`dataset`, saved under `cache_dir` the first time `key` is seen and loaded from there afterwards.

    Each entry holds a manifest of what was written (per part: example count, file sizes and
    a CRC-32 of its bytes, about 0.1 s per 100 MB to check), verified before every load. A
    damaged or incomplete entry is deleted and saved again, with a warning naming it.

    Args:
        dataset: a finite dataset; it is iterated once, in full, when first saved.
        cache_dir: where saved datasets live, e.g. `~/.cache/dann`; `None` returns `dataset` as it is.
        key: everything that decides `dataset`'s elements, JSON-serialisable (the dataset's
            name, version and files, the split, the preprocessing): a different key is a
            different entry, never a stale one.
        name: a readable prefix of the entry's directory name, e.g. `"mnist-train"`.
        before_save: called before `dataset` is read to be saved, e.g. to verify its source files.

    Returns:
        A dataset with the same elements in the same order. When `cache_dir` cannot be
        written (or the disk fills up while saving), a warning says so and `dataset` itself
        is returned.

    Raises:
        CorruptDataError: `dataset` yields another number of examples than its cardinality
            says (its source is damaged), or a damaged entry cannot be deleted (a read-only
            cache), naming the directory to delete.
    """
    if cache_dir is None:
        return dataset
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser()
    entry = root / f"{_slug(name)}-{digest}"
    if entry.is_dir():
        damage = _damage(entry, int(dataset.cardinality()))
        if damage is None:
            return _load(entry, dataset.element_spec)
        _remove_damaged(entry, damage)
    if before_save is not None:
        before_save()
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
        saved = _save_in_parts(dataset, partial)
    except BaseException as error:  # an input error, a full disk or Ctrl-C: nothing half-written stays behind
        shutil.rmtree(partial, ignore_errors=True)
        if _is_disk_full(error):
            warnings.warn(f"Not caching decoded examples: {root} is full. Free space there, or set data.cache_dir=null.", stacklevel=2)
            return dataset
        raise
    expected = int(dataset.cardinality())
    if expected >= 0 and saved != expected:
        shutil.rmtree(partial, ignore_errors=True)
        raise CorruptDataError(f"{name} yielded {saved} examples where its metadata says {expected}: its files are damaged or incomplete.")
    try:
        partial.rename(entry)
    except OSError:  # another run saved the same entry first
        shutil.rmtree(partial, ignore_errors=True)
    return _load(entry, dataset.element_spec)


def _load(entry: Path, element_spec) -> tf.data.Dataset:
    parts = [tf.data.Dataset.load(str(entry / part["path"]), element_spec=element_spec) for part in _manifest(entry)["parts"]]
    return functools.reduce(tf.data.Dataset.concatenate, parts[1:], parts[0])


def _save_in_parts(dataset: tf.data.Dataset, directory: Path, part_bytes: int = 2**28) -> int:
    """Saves `dataset` as numbered parts of about `part_bytes`, in order, and their manifest; returns the example count.

    Each part is gathered in memory before `Dataset.save` sees it: `save` deadlocks when its
    input raises (TensorFlow issue 61736), and a corrupt file must raise, here, in Python.
    """
    element_bytes = sum(
        spec.shape.num_elements() * spec.dtype.size for spec in tf.nest.flatten(dataset.element_spec) if spec.shape.is_fully_defined()
    )
    part_size = max(1, part_bytes // max(element_bytes, 1))
    if int(dataset.cardinality()) > 0:  # a batch size far above the count costs seconds of allocation
        part_size = min(part_size, int(dataset.cardinality()))
    parts = []
    for index, part in enumerate(dataset.batch(part_size)):
        path = directory / f"{index:06d}"
        # One shard per part keeps the examples' order.
        tf.data.Dataset.from_tensor_slices(part).save(str(path), shard_func=lambda *element: tf.constant(0, tf.int64))
        parts.append({"path": path.name, "examples": len(tf.nest.flatten(part)[0]), **_fingerprint(path)})
    if not parts:  # an empty dataset is saved as one empty part, so that loading it keeps its element spec
        path = directory / "000000"
        dataset.take(0).save(str(path))
        parts.append({"path": path.name, "examples": 0, **_fingerprint(path)})
    manifest = {"format": CACHE_FORMAT, "examples": sum(part["examples"] for part in parts), "parts": parts}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest["examples"]


def _fingerprint(part: Path) -> dict:
    """The sizes of a part's files and a CRC-32 of their bytes, in path order."""
    files, crc = {}, 0
    for path in sorted(p for p in part.rglob("*") if p.is_file()):
        files[str(path.relative_to(part))] = path.stat().st_size
        with open(path, "rb") as stream:
            while chunk := stream.read(2**24):
                crc = zlib.crc32(chunk, crc)
    return {"files": files, "crc32": crc}


def _manifest(entry: Path) -> dict:
    return json.loads((entry / MANIFEST).read_text())


def _damage(entry: Path, expected_examples: int) -> str | None:
    """What is wrong with a saved entry (a missing manifest, a missing, resized or changed file, another example count), or `None`."""
    try:
        manifest = _manifest(entry)
        parts = manifest["parts"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its manifest is missing or unreadable ({type(error).__name__})"
    if manifest.get("format") != CACHE_FORMAT:
        return f"it was written in cache format {manifest.get('format')}, not {CACHE_FORMAT}"
    if expected_examples >= 0 and manifest["examples"] != expected_examples:
        return f"it holds {manifest['examples']} examples where the dataset has {expected_examples}"
    for part in parts:
        directory = entry / part["path"]
        for file, size in part["files"].items():
            path = directory / file
            name = path.relative_to(entry)
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} has {path.stat().st_size} bytes where {size} were written"
        if _fingerprint(directory) != {"files": part["files"], "crc32": part["crc32"]}:
            return f"the bytes of {part['path']} changed since they were written"
    return None


def _remove_damaged(entry: Path, damage: str) -> None:
    """Deletes a damaged entry, with a warning; `CorruptDataError` when it cannot be deleted."""
    try:
        shutil.rmtree(entry)
    except OSError as error:
        raise CorruptDataError(
            f"The decoded-example cache entry {entry} is damaged ({damage}) and cannot be deleted ({error.strerror}): "
            f"delete it (rm -rf {entry}), or run with data.cache_dir=null."
        ) from None
    warnings.warn(f"The decoded-example cache entry {entry} was damaged ({damage}): deleted; saving it again.", stacklevel=3)


def _is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(error, tf.errors.OpError) and "No space left on device" in error.message


def _remove_abandoned(root: Path, entry_name: str, older_than_s: float = 3600.0) -> None:
    """Deletes partial saves of `entry_name` that no run has written to for `older_than_s` (interrupted runs'):
    a running save adds a part every few seconds, which renews its directory's time."""
    for partial in root.glob(f"{entry_name}.partial-*"):
        if time.time() - partial.stat().st_mtime > older_than_s:
            shutil.rmtree(partial, ignore_errors=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
