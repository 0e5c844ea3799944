import keras
import numpy as np
import pytest

from dann.config import build_algorithm, build_datasets, build_model
from dann.loop import TrainerSettings, fit


def _trained_weights(cfg, steps_per_call):
    keras.utils.set_random_seed(0)
    datasets = build_datasets(cfg)
    algorithm = build_algorithm(cfg, build_model(cfg, datasets))
    results = fit(algorithm, datasets, TrainerSettings(steps=20, batch_size=16, log_every=10, eval_every=20, steps_per_call=steps_per_call))
    return [v.numpy() for v in algorithm.model.trainable_variables], results


def test_several_steps_per_call_train_exactly_like_one(tiny_moons_cfg):
    one, results_one = _trained_weights(tiny_moons_cfg, 1)
    five, results_five = _trained_weights(tiny_moons_cfg, 5)
    for a, b in zip(one, five):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert results_one["target_test_accuracy"] == results_five["target_test_accuracy"]
    assert 0.0 <= results_five["input_wait_fraction"] <= 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "trainer.steps must be >= 1"),
        ({"batch_size": 0}, "trainer.batch_size must be >= 1"),
        ({"steps_per_call": 3}, "not a multiple of trainer.steps_per_call=3"),
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
