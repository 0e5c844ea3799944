"""`trainer.precision=auto`: bfloat16 where the devices compute it natively, chosen from the device list."""

import pytest
import tensorflow as tf

from dann.config import compose_config, run_precision
from dann.devices import native_bfloat16, resolve_precision

FAKE_GPU = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return path


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


@pytest.mark.parametrize(
    "capability, expected",
    [((8, 0), "mixed_bfloat16"), ((9, 0), "mixed_bfloat16"), ((7, 5), "float32"), ((6, 1), "float32")],
)
def test_a_gpu_decides_by_its_compute_capability_whatever_the_cpu(gpus, tmp_path, capability, expected):
    gpus[:] = [capability]
    assert resolve_precision("auto") == expected
    assert (native_bfloat16(_cpuinfo(tmp_path, "amx_bf16")) is not None) == (expected == "mixed_bfloat16")


@pytest.mark.parametrize(
    "flags, expected",
    [("avx512f avx512_bf16", "mixed_bfloat16"), ("amx_tile amx_bf16", "mixed_bfloat16"), ("avx512f avx512_vnni", "float32")],
)
def test_without_a_gpu_the_cpu_flags_decide(gpus, tmp_path, flags, expected):
    cpuinfo = _cpuinfo(tmp_path, flags)
    assert ("bf16" in (native_bfloat16(cpuinfo) or "")) == (expected == "mixed_bfloat16")
    assert native_bfloat16(tmp_path / "no_such_file") is None  # not Linux: no claim


def test_explicit_precisions_are_kept_and_unknown_ones_refused(gpus):
    gpus[:] = [(9, 0)]
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("mixed_float16") == "mixed_float16"
    with pytest.raises(ValueError, match="auto"):
        resolve_precision("bfloat16")


@pytest.mark.parametrize(
    "algorithm, expected", [("dann", "mixed_bfloat16"), ("cdan_e", "mixed_bfloat16"), ("vada", "float32"), ("dirt_t", "float32")]
)
def test_auto_keeps_float32_for_algorithms_that_lose_accuracy_in_bfloat16(gpus, algorithm, expected):
    gpus[:] = [(9, 0)]
    assert run_precision(compose_config(["+experiment=mnist_m", f"algorithm={algorithm}"])) == expected
    # Asked for explicitly, bfloat16 is what the user gets.
    assert (
        run_precision(compose_config(["+experiment=mnist_m", f"algorithm={algorithm}", "trainer.precision=mixed_bfloat16"]))
        == "mixed_bfloat16"
    )
