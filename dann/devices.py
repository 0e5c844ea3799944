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

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


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
