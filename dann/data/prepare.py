"""Preparing TFDS datasets, and the errors that say which input is missing or broken."""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request

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
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"Unknown dataset {name!r}: {str(error).splitlines()[0]}") from None
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
