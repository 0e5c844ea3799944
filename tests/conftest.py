"""Shared fixtures: two logical CPU devices, commands run in-process, tiny configs and runs, a small offline TFDS directory."""

from __future__ import annotations

import logging
import os
import runpy
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # each worker (and the processes it starts) gets its share of the cores:
    _threads = str(max(1, os.cpu_count() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))  # oversubscribed, they spin
    for _variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_variable, _threads)

import pytest
from absl import logging as absl_logging
from tests_support import SMALL_SPLIT, TINY_OVERRIDES, TINY_RUN, write_original_mnist_m


def pytest_configure(config: pytest.Config) -> None:
    """Two logical CPU devices in each process that runs tests, configured before TensorFlow initialises its runtime.
    pytest-xdist's controller only hands tests out: it starts the workers without importing TensorFlow (10 s)."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: handed out in this order to the next free worker (`--dist load`), the long ones overlap."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _offline_mirror() -> tuple[Path, Path] | None:
    """Where TFDS looks by default ($TFDS_DATA_DIR, else ~/tensorflow_datasets), and the BSDS500 photos there, if it
    holds prepared mnist and the photos: `downloads/manual/BSR` (an offline copy) or TFDS's extraction of the download
    (what `python -m dann.data` leaves)."""
    from dann.data.mnist_m import BSDS500_TRAIN_DIR

    candidate = Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")
    photos = [
        candidate / "downloads" / "manual" / BSDS500_TRAIN_DIR,
        *(candidate / "downloads" / "extracted").glob(f"*/{BSDS500_TRAIN_DIR}"),
    ]
    found = [path for path in photos if path.is_dir()]
    return (candidate, found[0]) if (candidate / "mnist").is_dir() and found else None


@pytest.fixture(autouse=True, scope="session")
def decoded_cache_in_a_temporary_directory(tmp_path_factory):
    """Configs keep prepared splits and precision verdicts in $DANN_CACHE_DIR (`cache_dir`): the tests', not the user's."""
    os.environ["DANN_CACHE_DIR"] = str(tmp_path_factory.mktemp("decoded_cache"))


@pytest.fixture
def run_command(capsys, monkeypatch):
    """`run_command(module, *args, cwd=path)` runs `python -m module args...` in this process, as the interpreter
    runs it (the module executed as `__main__`, with `sys.argv`; the exit status from `SystemExit`), without a new
    interpreter's 10 s of imports. Returns the `subprocess.CompletedProcess` a subprocess would: exit status, stdout
    and stderr (with the warnings the command raised). A bug's exception propagates, as the interpreter would print
    it. What only processes show (signals, a lock held by another PID, a fresh interpreter) is tested on processes.
    """

    def run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        before = capsys.readouterr()  # the test's own output so far, put back after the command's is taken
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", [module, *args])
        monkeypatch.delitem(sys.modules, module, raising=False)  # executed afresh as __main__, as by `python -m`
        # Hydra's logging setup closes every log handler; absl's closes its stream unless it is sys.stderr, as in a
        # process it is: here it is pytest's, so it is pointed at the captured one while the command runs.
        monkeypatch.setattr(absl_logging.get_absl_handler().python_handler, "stream", sys.stderr)
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as exit:
            if exit.code is None or isinstance(exit.code, int):
                status = exit.code or 0
            else:  # sys.exit(message): the interpreter prints it and exits with 1
                print(exit.code, file=sys.stderr)
                status = 1
        finally:
            for handler in set(root.handlers) - set(handlers):  # Hydra's log handlers for the run
                handler.close()
            root.handlers[:], root.level = handlers, level
        out, err = capsys.readouterr()
        sys.stdout.write(before.out)
        sys.stderr.write(before.err)
        err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
        return subprocess.CompletedProcess([sys.executable, "-m", module, *args], status, out, err)

    return run


@pytest.fixture
def tiny_moons_cfg():
    """The moons experiment, shrunk to a few steps."""
    from dann.config import compose_config

    return compose_config(["+experiment=moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    """A finished run of `TINY_RUN` and its results, trained once for the tests that read it (or change a copy of it)."""
    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    from dann.config import compose_config
    from dann.experiment import train

    return run_dir, train(compose_config(TINY_RUN), run_dir)


@pytest.fixture(scope="session")
def offline_data_dir(tmp_path_factory) -> Path:
    """A writable TFDS data directory holding prepared mnist and the BSDS500 training photos (never the network)."""
    found = _offline_mirror()
    if found is None:
        pytest.skip(
            "no prepared mnist and BSDS500 photos where TFDS looks ($TFDS_DATA_DIR, else ~/tensorflow_datasets): "
            "python -m dann.data prepares them (or set TFDS_DATA_DIR to a copy of such a directory)"
        )
    from dann.data.mnist_m import BSDS500_TRAIN_DIR

    mirror, photos = found
    data_dir = tmp_path_factory.mktemp("tfds")
    shutil.copytree(mirror / "mnist", data_dir / "mnist")
    shutil.copytree(photos, data_dir / "downloads" / "manual" / BSDS500_TRAIN_DIR)
    return data_dir


@pytest.fixture(scope="session")
def small_mnist_m_dir(offline_data_dir) -> Path:
    """`offline_data_dir` with mnist_m/synthetic built from the first MNIST digits of each split (fast)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("mnist_m", data_dir=offline_data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(max_examples_per_split=SMALL_SPLIT))
    return offline_data_dir


@pytest.fixture(scope="session")
def small_genuine_dir(small_mnist_m_dir) -> Path:
    """`small_mnist_m_dir` with mnist_m/original built from a small fixture of both splits (30 train, 10 test images)."""
    manual = small_mnist_m_dir / "downloads" / "manual"
    for split, count in (("train", 30), ("test", 10)):
        write_original_mnist_m(manual, split, count)
    import tensorflow_datasets as tfds

    tfds.builder("mnist_m/original", data_dir=small_mnist_m_dir).download_and_prepare()
    return small_mnist_m_dir
