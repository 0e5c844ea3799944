"""Preparing TFDS datasets, and the errors that say which input is missing or broken."""

from __future__ import annotations

import shutil
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import tensorflow_datasets as tfds


class MissingDataError(FileNotFoundError):
    """An input of a dataset is neither in the data directory nor downloadable."""


class CorruptDataError(ValueError):
    """An input file exists but cannot be read as what it should be."""


def dataset_builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The prepared TFDS builder of `name`; prepares it first (downloading what is missing) when it is not.

    Args:
        name: TFDS name, with an optional config: `"mnist"`, `"mnist_m/original"`.
        data_dir: the TFDS data directory; `None` follows TFDS (`TFDS_DATA_DIR`, else
            `~/tensorflow_datasets`).
    """
    builder = _builder(name, data_dir)
    if builder.is_prepared():
        return builder
    unreachable = unreachable_hosts(builder)
    if unreachable:  # fail now rather than after minutes of download retries
        raise MissingDataError(
            f"{name} is not prepared in {builder.data_dir_root} and could not be downloaded (cannot connect to "
            f"{', '.join(unreachable)}). Connect to the internet, or put a prepared copy in {builder.data_dir}."
        )
    try:
        builder.download_and_prepare()
    except (MissingDataError, CorruptDataError):
        raise
    except Exception as error:  # offline: TFDS raises many kinds of network errors
        raise MissingDataError(
            f"{name} is not prepared in {builder.data_dir_root} and could not be downloaded "
            f"({type(error).__name__}: {str(error)[:300]}). Connect to the internet, or put a prepared copy in "
            f"{builder.data_dir}."
        ) from None
    return builder


def prepare_datasets(names: list[str], data_dir: str | None = None, mirror: str | Path | None = None) -> list[tfds.core.DatasetBuilder]:
    """Prepares each TFDS dataset of `names` in `data_dir`, copying from `mirror` first what it lacks.

    Args:
        names: TFDS names, with an optional config: `["mnist", "mnist_m"]`.
        data_dir: the TFDS data directory; `None` follows TFDS (`TFDS_DATA_DIR`, else
            `~/tensorflow_datasets`).
        mirror: another TFDS data directory (a shared or offline copy): its prepared datasets
            of `names` and its manual downloads (`downloads/manual/*`) are copied where
            `data_dir` has none; what is still missing is built or downloaded.

    Returns:
        The prepared builders, in the order of `names`.
    """
    if mirror is not None:
        mirror = Path(mirror).expanduser()
        if not mirror.is_dir():
            raise MissingDataError(f"The mirror {mirror} is not a directory: pass a TFDS data directory.")
        for name in names:  # the prepared version directory, e.g. mnist/3.0.1
            destination = _builder(name, data_dir)
            _copy_missing(Path(_builder(name, str(mirror)).data_dir), Path(destination.data_dir))
            _copy_missing(mirror / "downloads" / "manual", Path(destination.data_dir_root) / "downloads" / "manual")
    return [dataset_builder(name, data_dir) for name in names]


def _builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """`tfds.builder(name)`, prepared or not; an unknown name is a `ValueError` that says so."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"Unknown dataset {name!r}: {str(error).splitlines()[0]}") from None


def _copy_missing(source: Path, destination: Path) -> None:
    """Copies the file or tree `source` to `destination`, leaving what `destination` already holds."""
    if not source.exists():
        return
    if source.is_file():
        if not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        return
    for child in source.iterdir():
        _copy_missing(child, destination / child.name)


def unreachable_hosts(builder: tfds.core.DatasetBuilder, timeout: float = 5.0) -> list[str]:
    """The hosts of `builder`'s registered download URLs, if none of them accepts a connection; else `[]`.

    Builders without registered URLs (e.g. `mnist_m`, whose inputs may be manual) give `[]`,
    and so does a machine that reaches the internet through a proxy (not probed).
    """
    if urllib.request.getproxies():
        return []
    hosts = sorted({urllib.parse.urlparse(url).hostname for url in builder.url_infos or {}} - {None})
    for host in hosts:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            return []
        except OSError:
            continue
    return hosts
