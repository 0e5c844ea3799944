"""`trainer.precision`: explicit policies kept, `auto` chosen from the devices and, on a CPU with bfloat16, measured."""

import json
import shutil
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from hydra.utils import get_class
from tests_support import TINY_OVERRIDES

import dann.devices
import dann.precision
from dann.config import build_datasets, choose_run_precision, compose_config
from dann.devices import describe_devices
from dann.experiment import train
from dann.precision import (
    MIN_BFLOAT16_SPEEDUP,
    choose_precision,
    dtype_policy,
    native_bfloat16,
    probe_bfloat16_speedup,
    time_interleaved,
)
from dann.runs import WALL_CLOCK_KEYS, load_metrics

FAKE_GPU = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")


@pytest.fixture
def gpus(monkeypatch):
    """Fakes TensorFlow's device list: assign GPU compute capabilities to `gpus[:]`."""
    capabilities: list[tuple[int, int]] = []
    listing = tf.config.list_physical_devices

    def fake_listing(kind=None):
        return [FAKE_GPU] * len(capabilities) if kind == "GPU" else listing(kind)

    monkeypatch.setattr(tf.config, "list_physical_devices", fake_listing)
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda device: {"compute_capability": capabilities[0]})
    return capabilities


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """Fakes /proc/cpuinfo: `cpu("Model", "flags")` makes the CPU that model, with those flags."""

    def fake(model: str = "Some CPU", flags: str = "") -> None:
        path = tmp_path / f"cpuinfo-{model}-{flags}"
        path.write_text(f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
        monkeypatch.setattr(dann.devices, "CPUINFO", path)

    return fake


class Probe:
    """A probe with a faked result that counts its calls."""

    def __init__(self, speedup: float):
        self.speedup, self.calls = speedup, 0

    def __call__(self) -> float:
        self.calls += 1
        return self.speedup


def never_called() -> float:
    raise AssertionError("the probe ran")


@pytest.mark.parametrize("capability, expected", [((8, 0), "mixed_bfloat16"), ((9, 0), "mixed_bfloat16"), ((7, 5), "float32")])
def test_a_gpu_decides_by_its_compute_capability_without_measuring(gpus, cpu, capability, expected):
    gpus[:] = [capability]
    cpu(flags="amx_bf16")  # the CPU does not matter when the model runs on GPUs
    choice = choose_precision("auto", probe=never_called)
    assert choice.policy == expected and choice.bfloat16_speedup is None


def test_the_devices_a_run_would_train_on_are_named(gpus, cpu):
    cpu("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz")
    assert describe_devices("default").startswith("devices   CPU: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz, ")
    gpus[:] = [(8, 0)]
    assert describe_devices("default") == (
        "devices   1 GPU: GPU (compute capability 8.0)\nstrategy  default: 1 replica(s)"
    )  # fmt: skip


def test_a_cpu_without_bfloat16_instructions_gets_float32_without_measuring(gpus, cpu):
    cpu(flags="avx512f avx512_vnni")
    assert native_bfloat16() is None
    assert choose_precision("auto", probe=never_called).policy == "float32"


@pytest.mark.parametrize(
    "speedup, expected",
    [(1.6, "mixed_bfloat16"), (MIN_BFLOAT16_SPEEDUP, "mixed_bfloat16"), (1.05, "float32"), (1.0, "float32"), (0.6, "float32")],
)
def test_on_a_cpu_with_bfloat16_the_measured_speedup_decides(gpus, cpu, speedup, expected):
    cpu(flags="avx512f avx512_bf16")
    probe = Probe(speedup)
    choice = choose_precision("auto", probe=probe)
    assert probe.calls == 1
    assert choice.policy == expected and choice.bfloat16_speedup == speedup and choice.probe_seconds > 0  # measured, not kept
    assert f"{speedup:.2f}x" in choice.reason and "avx512_bf16" in choice.reason


def test_a_kept_verdict_is_used_on_the_same_machine_and_measured_again_elsewhere(gpus, cpu, monkeypatch, tmp_path):
    network = {"model": {"filters": [32, 48]}, "batch": 128}
    cpu("Xeon", "amx_bf16")
    first = choose_precision("auto", probe=Probe(1.8), network=network, cache_dir=tmp_path)
    again = choose_precision("auto", probe=never_called, network=network, cache_dir=tmp_path)
    assert (first.policy, again.policy) == ("mixed_bfloat16", "mixed_bfloat16")
    assert again.bfloat16_speedup == 1.8 and again.probe_seconds == 0.0 and "kept" in again.reason
    kept = list((tmp_path / "precision").iterdir())
    assert len(kept) == 1 and json.loads(kept[0].read_text())["key"]["network"] == network

    # Another network, another CPU model, another TensorFlow: each measured anew.
    other_network = Probe(0.7)
    assert choose_precision("auto", probe=other_network, network={**network, "batch": 64}, cache_dir=tmp_path).policy == "float32"
    cpu("EPYC", "avx512_bf16")
    other_machine = Probe(0.7)
    assert choose_precision("auto", probe=other_machine, network=network, cache_dir=tmp_path).policy == "float32"
    cpu("Xeon", "amx_bf16")
    monkeypatch.setattr(tf, "__version__", "9.99.0")
    other_tensorflow = Probe(0.9)
    assert choose_precision("auto", probe=other_tensorflow, network=network, cache_dir=tmp_path).policy == "float32"
    assert (other_network.calls, other_machine.calls, other_tensorflow.calls) == (1, 1, 1)

    # No cache directory: measured in every run; a damaged verdict: measured again.
    uncached = Probe(1.8)
    choose_precision("auto", probe=uncached, network=network, cache_dir=None)
    choose_precision("auto", probe=uncached, network=network, cache_dir=None)
    assert uncached.calls == 2
    for path in (tmp_path / "precision").iterdir():
        path.write_text("{not json")
    damaged = Probe(1.8)
    assert choose_precision("auto", probe=damaged, network=network, cache_dir=tmp_path).policy == "mixed_bfloat16"
    assert damaged.calls == 1


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_an_explicit_precision_is_kept_and_never_probes(gpus, cpu, precision):
    cpu(flags="amx_bf16")
    choice = choose_precision(precision, probe=never_called)
    assert (choice.policy, choice.reason, choice.probe_seconds) == (precision, "asked for", None)
    with pytest.raises(ValueError, match="auto"):
        choose_precision("bfloat16")


@pytest.mark.parametrize(
    "algorithm, expected", [("dann", "mixed_bfloat16"), ("cdan_e", "mixed_bfloat16"), ("vada", "float32"), ("dirt_t", "float32")]
)
def test_auto_keeps_float32_for_algorithms_that_lose_accuracy_in_bfloat16(gpus, algorithm, expected):
    gpus[:] = [(9, 0)]
    algorithm_class = get_class(compose_config(["+experiment=mnist_m", f"algorithm={algorithm}"]).algorithm._target_)
    choice = choose_precision("auto", bfloat16_safe=algorithm_class.BFLOAT16_SAFE, algorithm=algorithm_class.__name__, probe=never_called)
    assert choice.policy == expected
    assert expected == "mixed_bfloat16" or choice.reason == f"{algorithm_class.__name__} loses accuracy in bfloat16"


def test_a_run_on_a_bfloat16_cpu_probes_its_own_network_once(gpus, cpu, monkeypatch, small_mnist_m_dir, tmp_path):
    cpu(flags="amx_bf16")
    measured = []

    def fake_probe(build_network, input_shape, batch_size, jit_compile):
        network = build_network("mixed_bfloat16")
        measured.append((network.feature_extractor.compute_dtype, input_shape, batch_size))
        return 0.8

    monkeypatch.setattr(dann.precision, "probe_bfloat16_speedup", never_called)
    monkeypatch.setattr("dann.config.probe_bfloat16_speedup", fake_probe)
    overrides = ["+experiment=mnist_m", f"data.data_dir={small_mnist_m_dir}", "data.source_train_split='train[:512]'",
                 f"cache_dir={tmp_path}", *TINY_OVERRIDES]  # fmt: skip
    cfg = compose_config(overrides)
    datasets = build_datasets(cfg)
    assert choose_run_precision(cfg, datasets).policy == "float32"
    assert choose_run_precision(cfg, datasets).probe_seconds == 0.0  # kept
    assert measured == [("bfloat16", datasets.input_shape, 2 * cfg.trainer.batch_size)]
    explicit = compose_config([*overrides, "trainer.precision=mixed_bfloat16"])
    monkeypatch.setattr("dann.config.probe_bfloat16_speedup", never_called)
    assert choose_run_precision(explicit, datasets).policy == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # the probe's networks left Keras' policy as it was


def _small_network(policy):
    with dtype_policy(policy):
        return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(2)])


def test_the_probe_times_a_real_network_in_both_precisions():
    speedup = probe_bfloat16_speedup(_small_network, (8, 8, 3), batch_size=4, rounds=3, round_seconds=0.01)
    assert np.isfinite(speedup) and speedup > 0
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize("float32_ms, bfloat16_ms", [(4, 2), (2, 4)])
def test_the_probe_reports_float32_time_over_bfloat16_time(monkeypatch, float32_ms, bfloat16_ms):
    built = []

    def timed_pass(network, input_shape, batch_size, jit_compile):
        built.append(network.layers[0].compute_dtype)
        pause = (bfloat16_ms if network.layers[0].compute_dtype == "bfloat16" else float32_ms) / 1000
        return lambda: time.sleep(pause)

    monkeypatch.setattr(dann.precision, "_training_pass", timed_pass)
    speedup = probe_bfloat16_speedup(_small_network, (8, 8, 3), batch_size=4, rounds=3, round_seconds=0.01)
    assert built == ["float32", "bfloat16"]
    assert speedup == pytest.approx(float32_ms / bfloat16_ms, rel=0.3)


def test_a_run_that_probes_trains_exactly_as_one_that_reads_the_kept_verdict_and_resumes_in_its_precision(gpus, cpu, monkeypatch, tmp_path):
    cpu(flags="amx_bf16")
    verdict = {"speedup": 0.5}

    def probe_drawing_random_numbers(build_network, *args):
        build_network("mixed_bfloat16")  # initialises weights: draws from the seeded generators
        return verdict["speedup"]

    monkeypatch.setattr("dann.config.probe_bfloat16_speedup", probe_drawing_random_numbers)
    overrides = ["+experiment=moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES, "trainer.deterministic=true"]
    cfg = compose_config([*overrides, "trainer.precision=auto", f"cache_dir={tmp_path / 'cache'}", "trainer.plots=false"])
    probed = train(cfg, tmp_path / "probed")
    kept = train(cfg, tmp_path / "kept")
    assert probed["precision_choice"]["probe_seconds"] > 0 and kept["precision_choice"]["probe_seconds"] == 0.0
    assert (tmp_path / "probed" / "model.keras").exists()
    assert [_without_time(r) for r in load_metrics(tmp_path / "probed")] == [_without_time(r) for r in load_metrics(tmp_path / "kept")]

    # A run resumes in the precision it started in, whatever auto would choose now.
    shutil.rmtree(tmp_path / "cache")
    verdict["speedup"] = 3.0
    (tmp_path / "probed" / "results.json").unlink()  # unfinished again: it resumes from its last checkpoint
    assert train(cfg, tmp_path / "probed")["precision"] == "float32"
    assert choose_run_precision(cfg, build_datasets(cfg)).policy == "mixed_bfloat16"  # what a new run would take


def _without_time(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in WALL_CLOCK_KEYS}


def test_interleaved_timing_stops_at_its_budget_after_two_rounds():
    calls = []
    seconds = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=10, budget_seconds=0.0)
    assert calls == ["a", "b", "a", "b"] and [len(v) for v in seconds.values()] == [2, 2]
    assert len(time_interleaved({"a": lambda: None}, rounds=10)["a"]) == 10
