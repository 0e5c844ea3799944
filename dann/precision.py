"""The precision a run trains in (`trainer.precision`), and how `auto` chooses it by measuring.

`auto` resolves, in this order:
1. An algorithm that loses accuracy in bfloat16 (`Algorithm.BFLOAT16_SAFE` false: VADA, DIRT-T):
   `float32`.
2. With GPUs: `mixed_bfloat16` from compute capability 8.0 on, else `float32`, by construction
   (no probe: not measured on a GPU).
3. A CPU without bfloat16 instructions (no `avx512_bf16` or `amx_bf16` flag, or no /proc/cpuinfo):
   `float32`. oneDNN emulates bfloat16 there; a probe would spend seconds to confirm it.
4. A CPU with them: a probe (`probe_bfloat16_speedup`) times the run's own feature extractor and
   label classifier (the costly part of an update), forward and backward, compiled, on a batch of
   the size one feature pass of one replica sees, in `float32` and `mixed_bfloat16` in
   alternation, and takes `mixed_bfloat16` only when it is at least `MIN_BFLOAT16_SPEEDUP` times
   faster. The flags cannot decide alone: oneDNN's bfloat16 convolutions are fast with AMX and
   can be slower than float32 without it. The verdict is kept under the cache directory per
   machine, TensorFlow version and network (`verdict_key`), so a network's first run on a
   machine pays for the probe (a few seconds) and later runs start at once. The workers of a
   multi-worker run do not probe (each would measure apart): float32 unless asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import keras
import tensorflow as tf

from dann.devices import cpuinfo_field, device_name
from dann.runs import write_atomically

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic: AVX512-BF16, AMX-BF16.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# GPUs compute bfloat16 natively from compute capability 8.0 (Ampere) on.
BFLOAT16_GPU_CAPABILITY = (8, 0)
# bfloat16 rounds more coarsely than float32: take it only for a clear gain in speed.
MIN_BFLOAT16_SPEEDUP = 1.15
VERDICTS_DIR = "precision"  # under the cache directory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecisionChoice:
    """The Keras dtype policy a run trains in, and why.

    Attributes:
        policy: `float32`, `mixed_bfloat16` or `mixed_float16`.
        requested: `trainer.precision` as given (`auto` or a policy).
        reason: why `policy`, in words, for the log.
        bfloat16_speedup: float32 step time / mixed_bfloat16 step time on this machine for this
            network (> 1: bfloat16 is faster); `None` where `auto` did not measure.
        probe_seconds: what measuring cost this run: 0.0 when a kept verdict was read, `None` without a probe.
    """

    policy: str
    requested: str
    reason: str
    bfloat16_speedup: float | None = None
    probe_seconds: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        """The run's log line: `precision float32 (trainer.precision=auto: why)`."""
        return f"precision {self.policy} (trainer.precision={self.requested}: {self.reason})"


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision must be one of {PRECISIONS}. Received: precision={precision!r}")


def native_bfloat16(cpuinfo: Path | None = None) -> str | None:
    """Why the devices TensorFlow trains on compute bfloat16 natively ("GPU compute capability 8.6"), or `None`.

    With GPUs, they decide (the model runs there), all of them; without, the CPU's flags
    (read from `cpuinfo`, default `dann.devices.CPUINFO`; another OS than Linux: `None`).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)) for gpu in gpus]
        slowest = min(capabilities)
        return f"GPU compute capability {slowest[0]}.{slowest[1]}" if slowest >= BFLOAT16_GPU_CAPABILITY else None
    found = [flag for flag in BFLOAT16_CPU_FLAGS if flag in cpuinfo_field("flags", cpuinfo).split()]
    return f"CPU flags {', '.join(found)}" if found else None


def choose_precision(
    requested: str,
    *,
    bfloat16_safe: bool = True,
    algorithm: str = "the algorithm",
    probe: Callable[[], float] | None = None,
    network: dict | None = None,
    cache_dir: str | Path | None = None,
) -> PrecisionChoice:
    """The policy of `trainer.precision=requested`; `auto` as the module docstring says.

    Args:
        requested: one of `PRECISIONS`.
        bfloat16_safe: `False` for an algorithm that loses accuracy in bfloat16 (`auto` gives float32).
        algorithm: its name, for the reason.
        probe: measures the bfloat16 speedup of the run's network (`probe_bfloat16_speedup`);
            called only for `auto` on a CPU with bfloat16 instructions and no kept verdict.
            `None`: such a CPU trains in float32, unmeasured.
        network: what identifies the network and batch the probe measures (part of the verdict's key).
        cache_dir: where verdicts are kept; `None` measures in every run.
    """
    check_precision(requested)
    if requested != "auto":
        return PrecisionChoice(requested, requested, "asked for")
    if not bfloat16_safe:
        return PrecisionChoice("float32", requested, f"{algorithm} loses accuracy in bfloat16")
    native = native_bfloat16()
    if native is None:
        return PrecisionChoice("float32", requested, "no native bfloat16 on these devices")
    if tf.config.list_physical_devices("GPU"):
        return PrecisionChoice("mixed_bfloat16", requested, f"native bfloat16 ({native}), not measured")
    if probe is None:
        return PrecisionChoice(
            "float32", requested, f"{native}, but bfloat16's speed not measured (trainer.precision=mixed_bfloat16 asks for it)"
        )
    key = verdict_key(network or {})
    speedup = read_verdict(cache_dir, key)
    if speedup is not None:
        probe_seconds = 0.0
    else:
        start = time.perf_counter()
        speedup = probe()
        probe_seconds = time.perf_counter() - start
        write_verdict(cache_dir, key, speedup)
    faster = speedup >= MIN_BFLOAT16_SPEEDUP
    return PrecisionChoice(
        "mixed_bfloat16" if faster else "float32",
        requested,
        f"{native}; measured bfloat16 {speedup:.2f}x as fast as float32 "
        f"({'at least' if faster else 'under'} the {MIN_BFLOAT16_SPEEDUP}x it must gain"
        f"{', kept from an earlier run' if probe_seconds == 0.0 else ''})",
        bfloat16_speedup=speedup,
        probe_seconds=probe_seconds,
    )


@contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Keras creates the layers made inside the block in `policy`; the previous policy is back afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def probe_bfloat16_speedup(
    build_network: Callable[[str], keras.Model],
    input_shape: tuple[int, ...],
    batch_size: int,
    jit_compile: bool = False,
    rounds: int = 5,
    round_seconds: float = 0.1,
    budget_seconds: float = 3.0,
) -> float:
    """float32 step time / mixed_bfloat16 step time of `build_network(policy)`'s training pass.

    The pass is the costly part of an update: forward in training mode, then the gradients of
    every trainable variable, compiled as the loop compiles it; the optimizer's update runs in
    float32 under both policies and is left out. The two alternate, `rounds` rounds of about
    `round_seconds` of float32 each (or fewer once `budget_seconds` are spent, two at least);
    the result is the median of the rounds' ratios, so a drift in the machine's speed cancels.

    Args:
        build_network: a new network of the run in the given dtype policy, inputs to outputs.
        input_shape: one example's shape.
        batch_size: examples per pass, as many as one update's feature pass sees.
    """
    policies = ("float32", "mixed_bfloat16")
    passes = {policy: _training_pass(build_network(policy), input_shape, batch_size, jit_compile) for policy in policies}
    for run in passes.values():
        run()  # traces and compiles
    start = time.perf_counter()
    passes["float32"]()
    repeats = max(1, min(50, round(round_seconds / max(time.perf_counter() - start, 1e-6))))
    seconds = time_interleaved({policy: _repeated(run, repeats) for policy, run in passes.items()}, rounds, budget_seconds)
    return statistics.median(f / b for f, b in zip(seconds["float32"], seconds["mixed_bfloat16"]))


def time_interleaved(runs: dict[str, Callable[[], object]], rounds: int, budget_seconds: float | None = None) -> dict[str, list[float]]:
    """Seconds of each run over `rounds` rounds in which every run goes once, in turn.

    Stops early, after two rounds at least, once `budget_seconds` are spent. Measuring in
    rounds lets a drift in the machine's speed touch every run alike.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    start = time.perf_counter()
    for round_ in range(rounds):
        if budget_seconds is not None and round_ >= 2 and time.perf_counter() - start > budget_seconds:
            break
        for name, run in runs.items():
            before = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - before)
    return seconds


def machine_signature() -> dict:
    """What a verdict depends on besides the network: devices, TensorFlow and oneDNN settings."""
    return {
        "device": device_name(),
        "native_bfloat16": native_bfloat16(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def verdict_key(network: dict) -> dict:
    """The key of a kept verdict: this machine (`machine_signature`) and `network`."""
    return {"machine": machine_signature(), "network": network}


def read_verdict(cache_dir: str | Path | None, key: dict) -> float | None:
    """The bfloat16 speedup kept for `key`, or `None` (none kept, unreadable, or no `cache_dir`)."""
    path = _verdict_path(cache_dir, key)
    if path is None or not path.exists():
        return None
    try:
        kept = json.loads(path.read_text())
        return float(kept["bfloat16_speedup"]) if kept["key"] == json.loads(json.dumps(key)) else None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignoring an unreadable precision verdict %s; it will be measured again", path)
        return None


def write_verdict(cache_dir: str | Path | None, key: dict, speedup: float) -> None:
    """Keeps `speedup` for `key` under `cache_dir` (no `cache_dir`: nothing); an unwritable directory warns."""
    path = _verdict_path(cache_dir, key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps({"key": key, "bfloat16_speedup": speedup}, indent=2) + "\n")
    except OSError as error:
        warnings.warn(f"Not keeping the measured precision verdict: {error}. Set cache_dir to a writable directory, or null.", stacklevel=2)


def _verdict_path(cache_dir: str | Path | None, key: dict) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / VERDICTS_DIR / f"{digest}.json"


def _training_pass(network: keras.Model, input_shape: tuple[int, ...], batch_size: int, jit_compile: bool) -> Callable[[], None]:
    inputs = tf.random.uniform((batch_size, *input_shape))

    @tf.function(jit_compile=jit_compile)
    def gradients_norm():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(network(inputs, training=True), tf.float32)))
        return tf.linalg.global_norm(tape.gradient(loss, network.trainable_variables))

    return lambda: gradients_norm().numpy()


def _repeated(run: Callable[[], object], times: int) -> Callable[[], None]:
    def repeated():
        for _ in range(times):
            run()

    return repeated
