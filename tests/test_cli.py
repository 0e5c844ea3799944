"""The command-line entry points, run as `python -m` runs them (`run_command`, conftest.py); a served model in a fresh interpreter."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2
from tests_support import TINY_OVERRIDES, load_script, write_original_mnist_m

import dann
from dann.config import compose_config
from dann.diagnosis import diagnose
from dann.health.report import health_report

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_train_writes_a_complete_run_directory(run_command, tmp_path):
    run_dir = tmp_path / "run"
    # Without figures (a run draws them in test_image_folders.py): dann.plot draws them below.
    done = run_command("dann.train", "+experiment=moons", *TINY_OVERRIDES, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((run_dir / "results.json").read_text())
    assert {"source_test_accuracy", "target_test_accuracy", "steps", "train_seconds", "seed"} <= set(results)
    assert results["steps"] == 20 and results["seed"] == 0
    assert results["precision"] == "float32" and "precision float32 (trainer.precision=float32: asked for)" in done.stdout
    assert results["precision_choice"] == {
        "policy": "float32", "requested": "float32", "reason": "asked for", "bfloat16_speedup": None, "probe_seconds": None
    }  # fmt: skip
    assert 0.0 <= results["target_test_accuracy"] <= 1.0

    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("step" in line for line in lines)
    assert [line["step"] for line in lines if "label_loss" in line] == [10, 20]
    evaluations = [line for line in lines if "target_test_accuracy" in line]
    assert [line["step"] for line in evaluations] == [20]
    assert evaluations[-1]["target_test_accuracy"] == results["target_test_accuracy"]
    # Wall time from the command's start (its imports included: seconds before the first step), evaluations timed apart.
    elapsed = [line["elapsed_seconds"] for line in lines]
    assert 1.0 < elapsed[0] and elapsed == sorted(elapsed) and elapsed[-1] - elapsed[0] >= evaluations[-1]["eval_seconds"] > 0
    assert results["eval_seconds"] >= evaluations[-1]["eval_seconds"] and results["train_seconds"] > 0

    assert "steps: 20" in (run_dir / "config.yaml").read_text()
    before = {path.name: path.stat().st_mtime for path in run_dir.iterdir() if path.name != "train.log"}
    done = run_command("dann.train", "+experiment=moons", *TINY_OVERRIDES, "optimizer.lr=0.5",
                      f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1  # another config in the same directory: refused in one line, the finished run untouched
    assert "RunDirectoryError" in done.stdout and "optimizer.lr: 0.05 there, 0.5 now" in done.stdout
    assert "trainer.overwrite=true" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert {path.name: path.stat().st_mtime for path in run_dir.iterdir() if path.name != "train.log"} == before  # Hydra appends to the log
    model = dann.load_model(run_dir)
    logits = model(tf.zeros((3, 2)))
    assert logits.shape == (3, 2) and np.isfinite(logits.numpy()).all()

    figures = ("learning_curves.png", "health.png", "embedding.png")
    assert not any((run_dir / name).exists() for name in figures)
    done = run_command("dann.plot", f"run_dir={run_dir}", f"before={run_dir}", "max_examples=40", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [str(run_dir / name) for name in figures]
    assert all((run_dir / name).stat().st_size > 10_000 for name in figures)

    report, monitor = health_report(run_dir)
    assert "Health of" in report and "No warning" in report and not monitor.warnings
    collapsed = {**evaluations[-1], "target_largest_class_share": 1.0}
    with open(run_dir / "metrics.jsonl", "a") as stream:  # two more evaluations, every target prediction one class
        stream.writelines(json.dumps({**collapsed, "step": step}) + "\n" for step in (30, 40))
    done = run_command("dann.health", f"run_dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 1 and "target_predictions_collapse (step 40): 100% of the target predictions are one class" in done.stdout
    assert "RuntimeWarning" not in done.stderr


def test_diagnose_prints_tables_and_exits_zero(run_command, tmp_path):
    done = run_command("dann.diagnose", "+experiment=moons", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "every trainable variable gets a gradient" in done.stdout
    assert "flow: as the algorithm declares" in done.stdout
    assert "devices   CPU: " in done.stdout and "strategy  default: 1 replica(s)" in done.stdout
    assert "precision float32 (trainer.precision=float32: asked for)" in done.stdout  # what a run would train in
    assert list(tmp_path.iterdir()) == []  # diagnosing writes nothing


def test_diagnosis_of_an_algorithm_with_a_teacher_and_vat():
    diagnosis = diagnose(compose_config(["+experiment=moons", "algorithm=dirt_t"], config_name="diagnose"))
    assert diagnosis.ok and diagnosis.algorithm == "DIRTT"
    assert "every trainable variable gets a gradient" in str(diagnosis) and "teacher_kl" in str(diagnosis)


@pytest.mark.slow
def test_multirun_sweeps_seeds(run_command, tmp_path, monkeypatch, capsys):
    sweep_dir = tmp_path / "sweep"
    done = run_command(
        "dann.train",
        "-m",
        "+experiment=moons",
        "seed=0,1",
        "optimizer.lr=0.1,0.01",
        "trainer.plots=false",
        *TINY_OVERRIDES,
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seeds = sorted(json.loads((sweep_dir / str(job) / "results.json").read_text())["seed"] for job in range(4))
    assert seeds == [0, 0, 1, 1]
    swept = sorted((hparams["seed"].number_value, hparams["optimizer.lr"].number_value) for hparams in map(_hparams, sweep_dir.glob("?")))
    assert swept == [(0, 0.01), (0, 0.1), (1, 0.01), (1, 0.1)]  # for TensorBoard's HParams dashboard

    monkeypatch.setattr(sys, "argv", ["collect_results.py", str(sweep_dir)])
    load_script("collect_results").main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "target_test_accuracy over 4 finished runs"
    assert lines[1] == "| optimizer.lr | runs | seeds | mean | std | min | max |"
    assert sorted(line.split(" | ")[0] for line in lines[3:]) == ["| 0.01", "| 0.1"]
    assert all(" | 2 | 0 1 | " in line for line in lines[3:])


def _hparams(run_dir):
    """The hyperparameters a run recorded for TensorBoard's HParams dashboard, by name."""
    for events in (run_dir / "tensorboard").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if data.HasField("session_start_info"):
                        return data.session_start_info.hparams
    raise AssertionError(f"no hyperparameters in {run_dir / 'tensorboard'}")


@pytest.mark.slow
def test_mnist_m_experiment_on_small_subsets_then_evaluate_on_original(run_command, small_mnist_m_dir, tmp_path):
    run_dir = tmp_path / "run"
    done = run_command(
        "dann.train",
        "+experiment=mnist_m",
        f"data.data_dir={small_mnist_m_dir}",
        "data.source_train_split='train[:512]'",  # quoted: brackets are Hydra syntax
        "data.source_test_split='test[:200]'",
        *TINY_OVERRIDES,
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 20
    assert 0.0 <= results["target_test_accuracy"] <= 1.0
    assert 0.0 <= results["proxy_a_distance_inputs"] <= 2.0 and 0.0 <= results["proxy_a_distance_features"] <= 2.0
    assert 0.0 <= results["proxy_a_distance_features_linear_svm"] <= 2.0  # scikit-learn is in the test extras
    assert 0.0 <= results["domain_classifier_accuracy"] <= 1.0

    original_dir = tmp_path / "original"
    write_original_mnist_m(original_dir / "downloads" / "manual", "test", 30)
    done = run_command(
        "dann.evaluate", f"run_dir={run_dir}", "dataset=mnist_m/original", "split=test", f"data_dir={original_dir}", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((run_dir / "eval_mnist_m_original_test.json").read_text())
    assert figures["num_examples"] == 30
    assert len(figures["per_class_accuracy"]) == 10
    assert f"accuracy {figures['accuracy']:.4f}" in done.stdout

    done = run_command("dann.export", f"run_dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "export" / "model.keras").exists()
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    serving = (  # a fresh interpreter that never imports dann
        "import sys, numpy as np, tensorflow as tf\n"
        f"serve = tf.saved_model.load({str(run_dir / 'export' / 'saved_model')!r}).signatures['serving_default']\n"
        f"probabilities = serve(images=tf.constant(np.load({str(tmp_path / 'images.npy')!r})))['probabilities']\n"
        "assert not any(name.split('.')[0] == 'dann' for name in sys.modules)\n"
        f"np.save({str(tmp_path / 'served.npy')!r}, probabilities.numpy())\n"
    )
    done = subprocess.run([sys.executable, "-c", serving], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    served = np.load(tmp_path / "served.npy")
    model = dann.load_model(run_dir)
    expected = tf.nn.softmax(model(dann.data.ImagePreprocessing(per_image=True).normalize(tf.constant(images)))).numpy()
    assert served.shape == (5, 10)
    # The run's precision is the default, auto: in bfloat16 the served graph's fused kernels round
    # differently from the eager call, by about bfloat16's resolution (2**-8).
    tolerance = 1e-5 if results["precision"] == "float32" else 2e-2
    np.testing.assert_allclose(served, expected, rtol=tolerance, atol=tolerance / 10)


@pytest.mark.slow
def test_time_to_accuracy_times_each_evaluation(tmp_path, monkeypatch, capsys, run_command):
    script, time_to_accuracy = REPO / "scripts" / "time_to_accuracy.py", load_script("time_to_accuracy")

    def in_this_process(command, **options):  # the `python -m dann.train ...` of dann.grid (test_grid.py starts one)
        assert command[:3] == [sys.executable, "-m", "dann.train"] and options == {"capture_output": True, "text": True}
        return run_command("dann.train", *command[3:], cwd=tmp_path)

    monkeypatch.setattr("dann.grid.subprocess.run", in_this_process)
    arguments = ["--experiment", "moons", "--threshold", "0.5", "--run-dir", str(tmp_path / "run"), "trainer.steps=450"]
    monkeypatch.setattr(sys, "argv", [str(script), *arguments, "--eval-every", "150"])  # not a multiple of log_every
    assert time_to_accuracy.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert [re.search(r"  step +(\d+)  target accuracy", line).group(1) for line in lines[1:-1]] == ["150", "300", "450"]
    timings = [[float(x) for x in re.match(r" *([0-9.]+) s \( *([0-9.]+) s without", line).groups()] for line in lines[1:-1]]
    training = [without for _, without in timings]
    assert 0 < training[0] and training == sorted(training) and all(without <= total for total, without in timings)
    assert "reached 0.5 after" in lines[-1] and "s without evaluations)" in lines[-1]


def test_an_experiment_of_ones_own_from_a_folder_outside_the_package(run_command, tmp_path):
    experiment = tmp_path / "my_configs" / "experiment" / "my_moons.yaml"
    experiment.parent.mkdir(parents=True)
    experiment.write_text("# @package _global_\ndefaults:\n  - moons  # a packaged experiment, extended\n\noptimizer:\n  lr: 0.02\n")
    run_dir = tmp_path / "run"
    search_path = f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]"
    done = run_command("dann.train", search_path, "+experiment=my_moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES,
                       f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lr: 0.02" in (run_dir / "config.yaml").read_text()
    assert compose_config([search_path, "+experiment=my_moons"]).optimizer.lr == 0.02  # the same option, for the library
