"""`model.fit` for Keras users: the same updates as `dann.fit`, with Keras' own callbacks."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tests_support import TINY_OVERRIDES

from dann.config import build_algorithm, build_datasets, build_model, compose_config
from dann.data import evaluation_batches, training_batches
from dann.devices import build_strategy
from dann.gradient_checks import GradientCoverageError
from dann.keras_model import DomainAdversarialModel
from dann.loop import TrainerSettings, fit
from dann.metrics import evaluate_classifier

STEPS, BATCH = 20, 16


def _algorithm(cfg, strategy=None):
    keras.utils.set_random_seed(0)
    datasets = build_datasets(cfg)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = build_model(cfg, datasets)
    algorithm = build_algorithm(cfg, model, strategy)
    return algorithm, algorithm.training_datasets(datasets)


def _target_accuracy(algorithm, datasets):
    batches = evaluation_batches(datasets.target_test, 64, datasets.normalize)
    return evaluate_classifier(algorithm.predict, batches, datasets.num_classes)["accuracy"]


@pytest.mark.parametrize("steps_per_execution", [1, 5])
def test_fit_with_keras_callbacks_trains_exactly_like_the_loop(tiny_moons_cfg, tmp_path, steps_per_execution):
    tf.config.experimental.enable_op_determinism()
    looped, datasets = _algorithm(tiny_moons_cfg)
    fit(looped, datasets, TrainerSettings(steps=STEPS, batch_size=BATCH, log_every=10, eval_every=STEPS, progress=False))

    algorithm, datasets = _algorithm(tiny_moons_cfg)
    model = DomainAdversarialModel(algorithm)
    model.compile(steps_per_execution=steps_per_execution)
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(tmp_path / "model.weights.h5"), save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor="label_loss", mode="min", patience=100),
        keras.callbacks.TensorBoard(str(tmp_path / "tensorboard")),
    ]
    history = model.fit(training_batches(datasets, BATCH, seed=0), steps_per_epoch=STEPS // 2, epochs=2, callbacks=callbacks, verbose=0)

    for a, b in zip(looped.model.trainable_variables, algorithm.model.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert _target_accuracy(algorithm, datasets) == _target_accuracy(looped, datasets)
    assert int(algorithm.optimizer.iterations) == STEPS and len(history.history["domain_loss"]) == 2
    assert history.history["lambda"][-1] == pytest.approx(float(algorithm.adaptation_factor(tf.constant(STEPS - 1))))
    assert (tmp_path / "model.weights.h5").exists() and list((tmp_path / "tensorboard").rglob("events.*"))
    assert model(next(iter(datasets.source_test.batch(3)))[0]).shape == (3, 2)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])  # float16: a LossScaleOptimizer
def test_fit_in_mixed_precision_trains_like_the_loop(precision):
    cfg = compose_config(["+experiment=moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES, f"trainer.precision={precision}"])
    looped, datasets = _algorithm(cfg)
    fit(looped, datasets, TrainerSettings(steps=STEPS, batch_size=BATCH, log_every=10, eval_every=STEPS, progress=False))
    algorithm, datasets = _algorithm(cfg)
    model = DomainAdversarialModel(algorithm)
    model.compile()
    model.fit(training_batches(datasets, BATCH, seed=0), steps_per_epoch=STEPS, epochs=1, verbose=0)
    for a, b in zip(looped.model.trainable_variables, algorithm.model.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fit_on_two_replicas_trains_exactly_like_the_loop(tiny_moons_cfg):
    strategy = build_strategy("mirrored", cpu_devices=2)
    looped, datasets = _algorithm(tiny_moons_cfg, strategy)
    assert looped.strategy.num_replicas_in_sync == 2
    fit(looped, datasets, TrainerSettings(steps=STEPS, batch_size=BATCH, log_every=10, eval_every=STEPS, progress=False))
    algorithm, datasets = _algorithm(tiny_moons_cfg, strategy)
    model = DomainAdversarialModel(algorithm)
    with pytest.raises(ValueError, match="19246"):
        model.compile(steps_per_execution=5)
    model.compile()
    history = model.fit(training_batches(datasets, BATCH, seed=0), steps_per_epoch=STEPS, epochs=1, verbose=0)
    for a, b in zip(looped.model.trainable_variables, algorithm.model.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(algorithm.optimizer.iterations.numpy()) == STEPS and np.isfinite(history.history["loss"][-1])
    with pytest.raises(ValueError, match="split evenly over 2 replicas"):
        model.fit(training_batches(datasets, BATCH + 1, seed=0), steps_per_epoch=1, epochs=1, verbose=0)


def test_fit_verifies_the_gradients_before_any_update(tiny_moons_cfg):
    algorithm, datasets = _algorithm(tiny_moons_cfg)
    compute = algorithm.compute_gradients
    algorithm.compute_gradients = lambda *args: (compute(*args)[0], [])  # bug: no variable gets a gradient
    model = DomainAdversarialModel(algorithm)
    model.compile()
    with pytest.raises(GradientCoverageError):
        model.fit(training_batches(datasets, BATCH, seed=0), steps_per_epoch=5, epochs=1, verbose=0)
    assert int(algorithm.optimizer.iterations) == 0
