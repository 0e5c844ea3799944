"""Devices and `tf.distribute` strategies: `trainer.strategy` and `trainer.cpu_devices`.

- `default`: one device (TensorFlow's default strategy).
- `mirrored`: `tf.distribute.MirroredStrategy` over all local GPUs, or, without GPUs, over
  the logical CPU devices (`trainer.cpu_devices=N` splits the CPU into N of them).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`; each worker runs the same
  command with its own `TF_CONFIG` environment variable (cluster and task index, see
  https://www.tensorflow.org/guide/distributed_training#TF_CONFIG) and its own
  `hydra.run.dir`.

The precision (`trainer.precision`) is chosen in `dann.precision`.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
CPUINFO = Path("/proc/cpuinfo")


def split_cpu(num_devices: int) -> None:
    """Makes the first CPU appear as `num_devices` logical devices; 1 or an existing split of that size: a no-op.

    Raises:
        ValueError: `num_devices` < 1, or TensorFlow already started with another split.
    """
    if num_devices < 1:
        raise ValueError(f"trainer.cpu_devices must be >= 1. Received: cpu_devices={num_devices}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if num_devices == 1 or len(current or ()) == num_devices:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as error:
        raise ValueError(
            f"trainer.cpu_devices={num_devices}: TensorFlow has already started with {len(current or [None])} CPU "
            "device(s), and logical devices can only be set before it starts. Set it in a fresh process."
        ) from error


def build_strategy(name: str, cpu_devices: int = 1) -> tf.distribute.Strategy:
    """The strategy `name` (one of `STRATEGIES`), after splitting the CPU into `cpu_devices` devices."""
    if name not in STRATEGIES:
        raise ValueError(f"trainer.strategy must be one of {STRATEGIES}. Received: strategy={name!r}")
    split_cpu(cpu_devices)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")])


def describe_devices(strategy: str, cpu_devices: int = 1) -> str:
    """What a run of `trainer.strategy=strategy` trains on, in two lines: the devices and the replicas.

    Call it in a fresh process, as a run would: `mirrored` splits the CPU into `cpu_devices` first.
    A `multi_worker` cluster is described from `TF_CONFIG`, without joining it.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
        devices = ", ".join(
            f"{detail.get('device_name', 'GPU')} (compute capability {'.'.join(map(str, detail.get('compute_capability', ('?',))))})"
            for detail in details
        )
        devices = f"{len(gpus)} GPU: {devices}"
    else:
        devices = f"CPU: {device_name()} (TensorFlow sees no GPU)"
    if strategy == "multi_worker":
        workers = len(json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", [])) or 1
        replicas = f"multi_worker: {workers} worker(s) in TF_CONFIG, each with the devices above"
    else:
        built = build_strategy(strategy, cpu_devices)
        replicas = f"{strategy}: {built.num_replicas_in_sync} replica(s)"
    return f"devices   {devices}\nstrategy  {replicas}"


def device_name() -> str:
    """The GPU's name if TensorFlow sees one, else the CPU model and its logical core count."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # taskset and cgroups too
    return f"{cpuinfo_field('model name') or platform.processor()}, {cores} logical cores"


def cpuinfo_field(name: str, cpuinfo: Path | None = None) -> str:
    """The first `name : value` of /proc/cpuinfo (or `cpuinfo`); "" where there is none."""
    try:
        lines = (cpuinfo or CPUINFO).read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == name), "")
