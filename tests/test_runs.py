"""Operating runs: checkpoints and resume, refusal of foreign run directories, NaN stops, determinism, TensorBoard."""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf
from tests_support import TINY_OVERRIDES, TINY_RUN

from dann.config import build_algorithm, build_datasets, build_model, compose_config, trainer_settings
from dann.experiment import train, write_plots
from dann.loop import EXIT_PREEMPTED, NonFiniteLossError, Preempted, fit
from dann.models import COMPONENTS
from dann.runs import WALL_CLOCK_KEYS, RunDirectoryError, check_run_directory, run_lock


def _cfg(*overrides):
    """The config of the shared `tiny_run` (conftest.py), with `overrides`."""
    return compose_config([*TINY_RUN, *overrides])


def _metrics(run_dir):
    """The run's metrics.jsonl records, without their wall-clock figures (which differ between identical runs)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("elapsed_seconds" in record for record in records)
    return [{key: value for key, value in record.items() if key not in WALL_CLOCK_KEYS} for record in records]


FORTY_STEPS = ("trainer.steps=40", "trainer.eval_every=20")


def _copy(run_dir: Path, to: Path) -> Path:
    """A copy of the run directory `run_dir` at `to`, for a test that changes it."""
    shutil.copytree(run_dir, to)
    return to


@pytest.fixture(scope="module")
def run_of_40_steps(tmp_path_factory) -> tuple[Path, dict]:
    """A finished, uninterrupted run of `_cfg(*FORTY_STEPS)`: what an interrupted and resumed one must equal."""
    run_dir = tmp_path_factory.mktemp("run_of_40_steps") / "run"
    return run_dir, train(_cfg(*FORTY_STEPS), run_dir)


# DIRT-T: refinement from step 10, teacher snapshots at 10 and 25; the resumed run needs step 10's from the checkpoint.
# SIGTERM is what schedulers send to preempt a job: handled like Ctrl-C, but reported as Preempted.
@pytest.mark.parametrize(
    "algorithm, stop, raised",
    [
        ("algorithm=dann", signal.SIGINT, KeyboardInterrupt),
        ("algorithm=dirt_t algorithm.refinement_fraction=0.75 algorithm.teacher_update_every=15", signal.SIGINT, KeyboardInterrupt),
        ("algorithm=dann", signal.SIGTERM, Preempted),
        ("algorithm=dann +model.feature_extractor.dropout=0.5", signal.SIGINT, KeyboardInterrupt),  # random state to restore
    ],
)
def test_interrupted_run_resumes_to_the_same_metrics(tmp_path, monkeypatch, request, algorithm, stop, raised):
    cfg = _cfg(*FORTY_STEPS, *algorithm.split())
    if algorithm == "algorithm=dann":  # the default: the same config as the shared run's
        whole_dir, whole = request.getfixturevalue("run_of_40_steps")
    else:
        whole_dir, whole = tmp_path / "whole", train(cfg, tmp_path / "whole")
    monkeypatch.setattr("dann.experiment.fit", _fit_signalled_in_call(2, stop))  # during steps 10-19
    run_dir = tmp_path / "interrupted"
    with pytest.raises(raised):
        train(cfg, run_dir)
    assert tf.train.latest_checkpoint(run_dir / "checkpoints").endswith("ckpt-20")
    assert not (run_dir / "results.json").exists()
    with open(run_dir / "metrics.jsonl", "a") as stream:
        stream.write('{"step": 30, "label_lo')  # a line cut short, as a full disk or a kill leaves it: left out on resume
    monkeypatch.setattr("dann.experiment.fit", fit)

    resumed = train(cfg, run_dir)
    assert resumed["resumed_from_step"] == 20
    assert _metrics(run_dir) == _metrics(whole_dir)
    assert resumed["target_test_accuracy"] == whole["target_test_accuracy"]


def test_a_checkpoint_without_the_random_states_resumes_with_a_warning(tmp_path, monkeypatch, caplog):
    cfg = _cfg(*FORTY_STEPS, "+model.feature_extractor.dropout=0.5")
    monkeypatch.setattr("dann.loop.layer_random_states", lambda model: [])  # checkpoints as an older dann wrote them
    monkeypatch.setattr("dann.experiment.fit", _fit_signalled_in_call(2, signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path)
    monkeypatch.undo()
    resumed = train(cfg, tmp_path)
    assert resumed["resumed_from_step"] == 20
    assert "holds no seed states of the dropout and noise layers" in caplog.text


def _fit_signalled_in_call(call: int, number: signal.Signals):
    """`fit` that sends this process the signal `number` during its `call`-th compiled call."""

    def fit_signalled(algorithm, datasets, settings, run_dir):
        compiled, calls = algorithm.update_steps, []

        def update_steps(*args):
            calls.append(args)
            if len(calls) == call:
                os.kill(os.getpid(), number)
            return compiled(*args)

        algorithm.update_steps = update_steps
        return fit(algorithm, datasets, settings, run_dir)

    return fit_signalled


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_damaged_latest_checkpoint_is_skipped_for_the_one_before(tmp_path, monkeypatch, caplog, run_of_40_steps):
    cfg = _cfg(*FORTY_STEPS)
    whole_dir, whole = run_of_40_steps
    run_dir = tmp_path / "damaged"
    monkeypatch.setattr("dann.experiment.fit", _fit_signalled_in_call(3, signal.SIGINT))  # checkpoints at 10, 20, 30
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir)
    (latest_data,) = (run_dir / "checkpoints").glob("ckpt-30.data-*")
    _truncate(latest_data)
    monkeypatch.setattr("dann.experiment.fit", fit)
    resumed = train(cfg, run_dir)
    assert "ckpt-30 does not load" in caplog.text
    assert resumed["resumed_from_step"] == 20
    assert _metrics(run_dir) == _metrics(whole_dir)
    assert resumed["target_test_accuracy"] == whole["target_test_accuracy"]


def test_when_no_checkpoint_loads_the_run_directory_is_left_as_it_is(tmp_path, monkeypatch):
    cfg = _cfg("trainer.steps=40", "trainer.keep_checkpoints=2")
    monkeypatch.setattr("dann.experiment.fit", _fit_signalled_in_call(3, signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path)
    for data in (tmp_path / "checkpoints").glob("ckpt-*.data-*"):
        _truncate(data)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    monkeypatch.setattr("dann.experiment.fit", fit)
    with pytest.raises(RunDirectoryError, match=r"no checkpoint in .*checkpoints loads .*ckpt-20, .*ckpt-30.*left as it is"):
        train(cfg, tmp_path)
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_a_run_directory_is_trained_by_one_process_at_a_time(tmp_path, caplog):
    with run_lock(tmp_path):
        with pytest.raises(RunDirectoryError, match=rf"being trained by process {os.getpid()} on {socket.gethostname()}"):
            train(_cfg(), tmp_path)
    assert not (tmp_path / "run.lock").exists() and not (tmp_path / "metrics.jsonl").exists()
    (tmp_path / "run.lock").write_text("process 999999 on a-host-that-crashed\n")  # left by a process that died
    train(_cfg(), tmp_path)
    assert "was left by process 999999 on a-host-that-crashed, which no longer runs" in caplog.text
    assert not (tmp_path / "run.lock").exists()


def test_finished_run_is_not_trained_again(tmp_path, monkeypatch, tiny_run):
    run_dir, first = _copy(tiny_run[0], tmp_path / "run"), tiny_run[1]
    monkeypatch.setattr("dann.experiment.fit", lambda *args: pytest.fail("trained again"))
    assert train(_cfg("trainer.progress=false"), run_dir) == first


def test_run_directory_of_another_config_is_refused_unless_overwritten(tmp_path, tiny_run):
    tmp_path = _copy(tiny_run[0], tmp_path / "run")
    with pytest.raises(RunDirectoryError, match=r"trainer.steps: 20 there, 30 now.*trainer.overwrite=true"):
        train(_cfg("trainer.steps=30"), tmp_path)
    (tmp_path / "export").mkdir()
    discarded = ("learning_curves.png", "health.png", "embedding.png", "eval_mnist_m_original_test.json", "export/model.keras")
    for name in (*discarded, "notes.txt"):
        (tmp_path / name).write_text("of the discarded run (notes.txt: the user's own)")
    results = train(_cfg("trainer.steps=30", "trainer.overwrite=true", "trainer.plots=false"), tmp_path)
    assert results["steps"] == 30 and results["resumed_from_step"] == 0
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.endswith((".png", ".json", ".txt")) or path.name == "export") == [
        "notes.txt",
        "precision.json",
        "results.json",
    ]


def test_a_broken_import_in_the_figures_is_not_taken_for_a_missing_extra(tmp_path, monkeypatch, caplog):
    monkeypatch.delitem(sys.modules, "dann.figures", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the plot extra is not installed
    caplog.set_level(logging.INFO)
    write_plots(tmp_path, datasets=None)
    assert "install the plot extra" in caplog.text
    monkeypatch.setitem(sys.modules, "dann.figures", None)  # dann's own module fails to import
    with pytest.raises(ModuleNotFoundError, match="dann.figures"):
        write_plots(tmp_path, datasets=None)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg("trainer.steps=40", "trainer.log_every=10")
    datasets = build_datasets(cfg)
    algorithm = build_algorithm(cfg, build_model(cfg, datasets))
    compiled = algorithm.update_steps

    def diverging(source_x, source_y, target_x, first_step):
        metrics = compiled(source_x, source_y, target_x, first_step)
        if int(first_step) >= 20:
            metrics = {**metrics, "domain_loss": tf.constant(float("nan"))}
        return metrics

    algorithm.update_steps = diverging
    with pytest.raises(NonFiniteLossError, match=r"domain_loss became nan by step 30.*checkpoint \(step 20\) is kept"):
        fit(algorithm, datasets, trainer_settings(cfg), tmp_path)
    assert tf.train.latest_checkpoint(tmp_path / "checkpoints").endswith("ckpt-20")


def test_deterministic_runs_write_identical_metrics(tmp_path):
    cfg = _cfg("trainer.select=dev_risk")
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


def test_tensorboard_events_hold_the_logged_scalars(tiny_run):
    tags = set()
    for path in (tiny_run[0] / "tensorboard").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert {"label_loss", "domain_loss", "domain_accuracy", "lambda", "learning_rate", "target_test_accuracy"} <= tags
    assert {f"{component}_gradient_norm" for component in COMPONENTS} <= tags


def test_mirrored_on_two_cpus_matches_one_device(tmp_path, tiny_run):
    (one_dir, one), two_dir = tiny_run, tmp_path / "two"
    two = train(_cfg("trainer.strategy=mirrored", "trainer.cpu_devices=2"), two_dir)
    records = [_metrics(one_dir), _metrics(two_dir)]
    for a, b in zip(*records):
        assert a.keys() == b.keys()
        same = _same_on_any_replicas(a)
        np.testing.assert_allclose([a[k] for k in same], [b[k] for k in same], rtol=1e-4, atol=1e-5)
    weights = [keras.saving.load_model(run_dir / "model.keras").get_weights() for run_dir in (one_dir, two_dir)]
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert one["target_test_accuracy"] == two["target_test_accuracy"]


def test_run_killed_after_its_last_checkpoint_finishes_without_training(tmp_path, monkeypatch, tiny_run):
    cfg, expected = _cfg(), tiny_run[1]
    tmp_path = _copy(tiny_run[0], tmp_path / "run")
    for name in ("results.json", "model.keras"):  # as if killed between the final checkpoint and these
        (tmp_path / name).unlink()
    monkeypatch.setattr("dann.algorithms.base.Algorithm._update", lambda *args: pytest.fail("trained again"))
    results = train(cfg, tmp_path)
    assert results["resumed_from_step"] == 20
    assert results["target_test_accuracy"] == expected["target_test_accuracy"]


@pytest.mark.parametrize("enabled", [True, False])
def test_progress_bar_shows_on_a_terminal_unless_disabled(tmp_path, monkeypatch, capsys, enabled):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    train(_cfg(f"trainer.progress={str(enabled).lower()}", "trainer.plots=false"), tmp_path)
    output = capsys.readouterr().out
    assert ("20/20" in output and "domain_loss:" in output and "/step" in output) == enabled


@pytest.mark.slow
def test_two_worker_cluster_matches_one_device(tmp_path, tiny_run):
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            ports.append(probe.getsockname()[1])
    tiny = ["+experiment=moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES]
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"localhost:{port}" for port in ports]}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}
        command = [
            sys.executable,
            "-m",
            "dann.train",
            *tiny,
            "trainer.strategy=multi_worker",
            f"hydra.run.dir={tmp_path / f'worker{index}'}",
        ]
        workers.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]
    records = [_metrics(run_dir) for run_dir in (tiny_run[0], tmp_path / "worker0", tmp_path / "worker1")]
    for one, *workers_lines in zip(*records):
        same = _same_on_any_replicas(one)
        for line in workers_lines:
            np.testing.assert_allclose([line[k] for k in same], [one[k] for k in same], rtol=1e-4, atol=1e-5)


def _same_on_any_replicas(record: dict) -> list[str]:
    """The keys of a metrics record that do not depend on how the batch is split over replicas: all but the
    gradient norms, which each replica measures on its own slice."""
    return [key for key in record if not key.endswith("_gradient_norm")]


def test_steps_need_not_be_a_multiple_of_the_steps_per_call(tmp_path):
    results = train(_cfg("trainer.steps=15", "trainer.log_every=100", "trainer.eval_every=500"), tmp_path)
    assert results["steps"] == 15
    assert [record["step"] for record in _metrics(tmp_path)] == [15, 15]  # training, evaluation


@pytest.mark.slow
def test_preempted_refused_killed_and_resumed_processes_on_one_run(tmp_path, run_command):
    """One run through what a cluster does to it: another process (this one) is refused while the first lives;
    SIGTERM saves and exits with EXIT_PREEMPTED; a resumed process killed with SIGKILL after a checkpoint (its lock
    left behind) leaves a run that resumes to completion, each logging interval written once."""
    run_dir = tmp_path / "run"
    overrides = ["+experiment=moons", "trainer.steps=600", "trainer.checkpoint_every=100", "trainer.log_every=100",
                 "trainer.eval_every=300", "trainer.plots=false"]  # fmt: skip
    argv = ["dann.train", *overrides, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def start(**streams) -> subprocess.Popen:
        """A training process that imports TensorFlow and dann at once, then trains when a line arrives on its stdin:
        the resumed process's imports overlap the first process's run."""
        go = (f"import runpy, sys, dann.train\nif sys.stdin.readline() == 'go\\n':\n    sys.argv = {argv!r}\n"
              "    runpy.run_module('dann.train', run_name='__main__')")  # fmt: skip
        return subprocess.Popen([sys.executable, "-c", go], cwd=tmp_path, env=env, text=True, stdin=subprocess.PIPE, **streams)

    def train_and_pause_after_a_checkpoint(process: subprocess.Popen, after_step: int) -> None:
        """Lets `process` train, and stops it (SIGSTOP, still alive and holding the run) once a checkpoint beyond
        `after_step` exists."""
        process.stdin.write("go\n")
        process.stdin.flush()
        deadline = time.monotonic() + 180
        while process.poll() is None and time.monotonic() < deadline:
            latest = tf.train.latest_checkpoint(run_dir / "checkpoints")
            if latest is not None and int(latest.rsplit("-", 1)[1]) > after_step:
                process.send_signal(signal.SIGSTOP)
                break
            time.sleep(0.02)
        assert process.poll() is None and not (run_dir / "results.json").exists(), "the run ended before it could be paused"

    first = start(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    resumed = start(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    train_and_pause_after_a_checkpoint(first, 0)
    second = run_command("dann.train", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert second.returncode == 1 and f"is being trained by process {first.pid}" in second.stdout
    first.send_signal(signal.SIGTERM)
    first.send_signal(signal.SIGCONT)
    output, _ = first.communicate(timeout=120)
    assert first.returncode == EXIT_PREEMPTED, output[-3000:]
    assert "Preempted: SIGTERM at step" in output and "Traceback" not in output
    stopped_at = int(tf.train.latest_checkpoint(run_dir / "checkpoints").rsplit("-", 1)[1])
    assert f"SIGTERM at step {stopped_at}:" in output  # the steps since the last checkpoint were saved

    train_and_pause_after_a_checkpoint(resumed, stopped_at)
    resumed.send_signal(signal.SIGKILL)
    resumed.wait()
    killed_at = int(tf.train.latest_checkpoint(run_dir / "checkpoints").rsplit("-", 1)[1])

    results = train(compose_config(overrides), run_dir)  # the same resume as the command's, without a third process
    assert results["steps"] == 600 and results["resumed_from_step"] == killed_at > stopped_at
    steps = [record["step"] for record in _metrics(run_dir) if "label_loss" in record]
    assert steps == list(range(100, 601, 100))  # every interval once: lines after a checkpoint were not kept twice


def test_a_run_killed_before_its_first_checkpoint_starts_over_cleanly(tmp_path, tiny_run):
    cfg, (whole_dir, whole) = _cfg(), tiny_run
    run_dir = _copy(whole_dir, tmp_path / "killed")
    for name in ("checkpoints", "results.json", "model.keras"):  # as a kill -9 before the first checkpoint leaves it
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    again = train(cfg, run_dir)
    assert again["resumed_from_step"] == 0
    assert _metrics(run_dir) == _metrics(whole_dir)  # the killed process's lines are not kept twice
    assert again["target_test_accuracy"] == whole["target_test_accuracy"]


def test_where_the_caches_are_does_not_make_another_config(tmp_path):
    cfg = compose_config(["+experiment=mnist_m", "cache_dir=/one/place"])
    older = OmegaConf.to_container(cfg, resolve=True)
    del older["cache_dir"]  # as written before the key existed
    older["data"]["cache_dir"] = "/another/place"
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(older))
    assert check_run_directory(cfg, tmp_path) is None  # unfinished, and the same run
    with pytest.raises(RunDirectoryError, match="seed"):
        check_run_directory(compose_config(["+experiment=mnist_m", "seed=1"]), tmp_path)
