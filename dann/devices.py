"""Devices and `tf.distribute` strategies: `trainer.strategy` and `trainer.cpu_devices`.

- `default`: one device (TensorFlow's default strategy).
- `mirrored`: `tf.distribute.MirroredStrategy` over all local GPUs, or, without GPUs, over
  the logical CPU devices (`trainer.cpu_devices=N` splits the CPU into N of them).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`; each worker runs the same
  command with its own `TF_CONFIG` environment variable (cluster and task index, see
  https://www.tensorflow.org/guide/distributed_training#TF_CONFIG) and its own
  `hydra.run.dir`.

`trainer.precision=auto` picks `mixed_bfloat16` where the hardware computes bfloat16
natively and `float32` elsewhere (`resolve_precision`).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")

# CPU flags (Linux /proc/cpuinfo) of native bfloat16 matrix arithmetic: AVX512-BF16, AMX-BF16.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# GPUs compute bfloat16 natively from compute capability 8.0 (Ampere) on.
BFLOAT16_GPU_CAPABILITY = (8, 0)


def native_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """Why the devices TensorFlow trains on compute bfloat16 natively ("GPU compute capability 8.6"), or `None`.

    With GPUs, they decide (the model runs there), all of them; without, the CPU's flags
    (read from `cpuinfo`; another OS than Linux: `None`).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)) for gpu in gpus]
        slowest = min(capabilities)
        return f"GPU compute capability {slowest[0]}.{slowest[1]}" if slowest >= BFLOAT16_GPU_CAPABILITY else None
    try:
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), [])
    except OSError:
        return None
    found = [flag for flag in BFLOAT16_CPU_FLAGS if flag in flags]
    return f"CPU flags {', '.join(found)}" if found else None


def resolve_precision(precision: str, bfloat16_safe: bool = True) -> str:
    """The Keras dtype policy of `trainer.precision`: itself; for `auto`, `mixed_bfloat16` if `native_bfloat16()`, else `float32`.

    `bfloat16_safe=False` (an algorithm that loses accuracy in bfloat16) makes `auto` float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if bfloat16_safe and native_bfloat16() else "float32"


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
