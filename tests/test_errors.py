"""Bad input fails early, with a message that says what to fix, and leaves no half-written run directory."""

import pytest
import tensorflow_datasets as tfds

from dann.config import compose_config
from dann.data import MissingDataError, dataset_builder
from dann.train import train
from tests_support import TINY_OVERRIDES, run_module

MOONS = ["+experiment=moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["+experiment=mnist_n"], "Could not find 'experiment/mnist_n'"),
        ([*MOONS, "trainer.stepz=5"], "Key 'stepz' not in 'TrainerConfig'"),
        ([*MOONS, "trainer.steps=-20"], "trainer.steps must be >= 1. Received: steps=-20"),
        ([*MOONS, "trainer.batch_size=0"], "trainer.batch_size must be >= 1"),
        ([*MOONS, "schedule.adaptation.gamma=0"], "SigmoidRamp: gamma must be > 0"),
    ],
)
def test_config_errors_say_what_is_wrong_and_leave_nothing(tmp_path, overrides, message):
    done = run_module("dann.train", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 1
    assert message in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, message",
    [("trainer.select=best", "trainer.select must be one of"), ("trainer.strategy=tpu", "trainer.strategy must be one of")],
)
def test_trainer_choices_are_checked_before_any_work(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        train(compose_config([*MOONS, override]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_missing_dataset_offline_says_where_to_put_it(monkeypatch, tmp_path):
    def offline(self, url_or_urls):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.download.DownloadManager, "download", offline)
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    cfg = compose_config(["+experiment=mnist_m", f"data.data_dir={tmp_path / 'tfds'}", *TINY_OVERRIDES])
    with pytest.raises(MissingDataError, match=r"mnist is not prepared in .* could not be downloaded .*Connect to the internet, or put"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_run_directory_of_another_config_is_refused_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    assert run_module("dann.train", *MOONS, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    before = {path.name: path.stat().st_mtime for path in run_dir.iterdir() if path.name != "train.log"}
    done = run_module("dann.train", *MOONS, "optimizer.lr=0.5", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 1
    assert "RunDirectoryError" in done.stdout and "optimizer.lr: 0.05 there, 0.5 now" in done.stdout
    assert "trainer.overwrite=true" in done.stdout and "Traceback" not in done.stdout + done.stderr
    after = {path.name: path.stat().st_mtime for path in run_dir.iterdir() if path.name != "train.log"}  # Hydra appends the error
    assert after == before  # the finished run is untouched


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
