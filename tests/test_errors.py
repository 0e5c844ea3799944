"""Bad input fails early, with a message that says what to fix, and leaves no half-written run directory."""

import errno

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from hydra.errors import ConfigCompositionException
from tests_support import TINY_OVERRIDES

from dann.config import USER_ERRORS, compose_config
from dann.data import MissingDataError, dataset_builder
from dann.experiment import failure_message, train

MOONS = ["+experiment=moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([*MOONS, "trainer.stepz=5"], "Key 'stepz' not in 'TrainerConfig'"),  # refused by Hydra, at composition
        ([*MOONS, "schedule.adaptation.gamma=0"], "SigmoidRamp: gamma must be > 0"),  # by a constructor, before any work
    ],
)
def test_config_errors_stop_the_command_in_one_line_and_leave_nothing(run_command, tmp_path, overrides, message):
    done = run_command("dann.train", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 1
    assert message in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "run").exists()


# The command shows each of these as the two above: one line, exit status 1, nothing left behind.
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["+experiment=mnist_n"], "Could not find 'experiment/mnist_n'"),
        ([*MOONS, "trainer.steps=-20"], "trainer.steps must be >= 1. Received: steps=-20"),
        ([*MOONS, "trainer.batch_size=0"], "trainer.batch_size must be >= 1"),
    ],
)
def test_config_errors_say_what_is_wrong_before_any_work(tmp_path, overrides, message):
    with pytest.raises(Exception) as caught:
        train(compose_config(overrides), tmp_path / "run")
    assert isinstance(caught.value, (*USER_ERRORS, ConfigCompositionException))
    assert message in str(caught.value) + str(caught.value.__cause__)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override",
    ["trainer.select=best", "trainer.strategy=tpu", "trainer.precision=float8", "trainer.feature_pass=both", "algorithm=dan"],
)
def test_closed_choices_are_refused_at_composition_naming_the_allowed_values(override):
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config([*MOONS, override])
    message = str(caught.value) + str(caught.value.__cause__)
    assert override.split("=")[1] in message and ("expected one of" in message or "Available options" in message)


def test_benchmark_without_data_says_what_is_missing_in_one_line(run_command, tmp_path):
    done = run_command("dann.benchmark", f"data.data_dir={tmp_path / 'empty'}", "--steps", "1", "--repeats", "1", cwd=tmp_path)
    assert done.returncode == 1
    assert "MissingDataError: mnist is not prepared" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_dataset_offline_says_where_to_put_it(monkeypatch, tmp_path):
    def offline(self, url_or_urls):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.download.DownloadManager, "download", offline)
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    cfg = compose_config(["+experiment=mnist_m", f"data.data_dir={tmp_path / 'tfds'}", *TINY_OVERRIDES])
    with pytest.raises(MissingDataError, match=r"mnist is not prepared in .* could not be downloaded .*Connect to the internet, or put"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_missing_dataset_fails_fast_when_its_download_hosts_are_unreachable(monkeypatch, tmp_path):
    def unreachable(address, timeout=None):
        raise OSError(f"cannot connect to {address}")

    def never(*args):
        pytest.fail("tried to download")

    monkeypatch.setattr("socket.create_connection", unreachable)
    monkeypatch.setattr("urllib.request.getproxies", dict)  # no proxy: the hosts are probed
    monkeypatch.setattr(tfds.download.DownloadManager, "download", never)
    with pytest.raises(MissingDataError, match=r"mnist is not prepared in .* could not be downloaded \(cannot connect to"):
        dataset_builder("mnist", str(tmp_path))


def test_a_bug_before_the_first_checkpoint_shows_its_traceback_and_leaves_nothing(run_command, tmp_path, monkeypatch):
    def failing_fit(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr("dann.experiment.fit", failing_fit)
    done = run_command("dann.train", *MOONS, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "RuntimeError: a bug" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "error, message",
    [
        (
            tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[100000000,28,28,3]"),
            "out of memory (OOM when allocating tensor with shape[100000000,28,28,3]). Lower trainer.batch_size (now 16), "
            "trainer.eval_batch_size (now 100000000) or trainer.steps_per_call (now 10).",
        ),
        (OSError(errno.ENOSPC, "No space left on device", "metrics.jsonl"), "no space left on the device while writing metrics.jsonl"),
    ],
)
def test_resources_running_out_before_the_first_checkpoint_leave_nothing_and_say_what_to_do(tmp_path, monkeypatch, error, message):
    def failing_fit(*args):
        raise error

    monkeypatch.setattr("dann.experiment.fit", failing_fit)
    cfg = compose_config([*MOONS, "trainer.eval_batch_size=100000000"])
    with pytest.raises(type(error)) as caught:
        train(cfg, tmp_path / "run")
    assert message in failure_message(caught.value, cfg)  # the command's one line (its exit status: 1)
    assert not (tmp_path / "run").exists()


def test_a_full_disk_under_tensorflow_is_not_taken_for_out_of_memory():
    # What TensorFlow raises when a checkpoint write finds the disk full (measured on a 400 KiB tmpfs).
    full = "{{function_node __wrapped__SaveV2}} /runs/a/checkpoints/ckpt-200_temp/part-0.data; No space left on device [Op:SaveV2]"
    message = failure_message(tf.errors.ResourceExhaustedError(None, None, full), compose_config(MOONS))
    assert message.startswith("no space left on the device while writing /runs/a/checkpoints/ckpt-200_temp/part-0.data.")


@pytest.mark.parametrize("command", ["dann.evaluate", "dann.export", "dann.health", "dann.plot"])
def test_a_command_on_a_missing_run_directory_says_so_in_one_line(command, run_command, tmp_path):
    missing = tmp_path / "no_such_run"
    done = run_command(command, f"run_dir={missing}", *(["dataset=mnist"] if command == "dann.evaluate" else []), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("FileNotFoundError: ") and str(missing) in line
