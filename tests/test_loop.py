import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from dann.config import build_algorithm, build_datasets, build_model
from dann.data import CorruptDataError
from dann.loop import TrainerSettings, call_lengths, fit


def _trained_weights(cfg, steps_per_call, steps=20, log_every=10):
    keras.utils.set_random_seed(0)
    datasets = build_datasets(cfg)
    algorithm = build_algorithm(cfg, build_model(cfg, datasets))
    settings = TrainerSettings(steps=steps, batch_size=16, log_every=log_every, eval_every=steps, steps_per_call=steps_per_call)
    results = fit(algorithm, datasets, settings)
    return [v.numpy() for v in algorithm.model.trainable_variables], results


@pytest.mark.parametrize("steps, log_every", [(20, 10), (23, 7)])  # multiples of steps_per_call, and not
def test_several_steps_per_call_train_exactly_like_one(tiny_moons_cfg, steps, log_every):
    one, results_one = _trained_weights(tiny_moons_cfg, 1, steps, log_every)
    five, results_five = _trained_weights(tiny_moons_cfg, 5, steps, log_every)
    for a, b in zip(one, five):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert results_one["target_test_accuracy"] == results_five["target_test_accuracy"]
    assert 0.0 <= results_five["input_wait_fraction"] <= 1.0


def test_a_call_ends_where_logging_evaluation_a_checkpoint_or_the_end_falls():
    settings = TrainerSettings(steps=23, batch_size=8, log_every=7, eval_every=20, checkpoint_every=1000, steps_per_call=5)
    assert call_lengths(settings) == [5, 2, 5, 2, 5, 1, 1, 2]  # logs at 7 14 21, evaluates at 20, ends at 23
    assert call_lengths(TrainerSettings(steps=30, batch_size=8, log_every=10, eval_every=30, steps_per_call=10)) == [10, 10, 10]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "trainer.steps must be >= 1"),
        ({"batch_size": 0}, "trainer.batch_size must be >= 1"),
        ({"steps_per_call": 0}, "trainer.steps_per_call must be >= 1"),
    ],
)
def test_trainer_settings_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainerSettings(**{"steps": 20, "batch_size": 8, "log_every": 10, "eval_every": 20, **kwargs})


def test_fit_takes_the_run_directory_as_a_string(tiny_moons_cfg, tmp_path):
    datasets = build_datasets(tiny_moons_cfg)
    algorithm = build_algorithm(tiny_moons_cfg, build_model(tiny_moons_cfg, datasets))
    fit(algorithm, datasets, TrainerSettings(steps=20, batch_size=16, log_every=10, eval_every=20, progress=False), run_dir=str(tmp_path))
    assert (tmp_path / "metrics.jsonl").exists() and (tmp_path / "checkpoints" / "checkpoint").exists()


def test_nan_inputs_handed_to_the_library_are_refused_before_any_step(tiny_moons_cfg, tmp_path):
    datasets = build_datasets(tiny_moons_cfg)
    inputs, labels = (np.stack(part) for part in zip(*datasets.target_test.as_numpy_iterator()))
    inputs[[3, 7], 1] = np.nan
    datasets = dataclasses.replace(datasets, target_test=tf.data.Dataset.from_tensor_slices((inputs, labels)))
    algorithm = build_algorithm(tiny_moons_cfg, build_model(tiny_moons_cfg, datasets))
    settings = TrainerSettings(steps=20, batch_size=16, log_every=10, eval_every=20, progress=False)
    with pytest.raises(CorruptDataError, match="target_test: 2 example.s. have NaN or infinite inputs, e.g. example 3"):
        fit(algorithm, datasets, settings, run_dir=tmp_path / "run")
    assert int(algorithm.optimizer.iterations) == 0 and not (tmp_path / "run" / "checkpoints").exists()
