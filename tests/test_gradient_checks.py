"""Gradient coverage and flow reports; the planted bugs of every algorithm are in test_algorithms.py."""

import keras
import pytest
import tensorflow as tf

from dann.config import build_algorithm, build_datasets, build_model
from dann.data import training_batches
from dann.gradient_checks import GradientCoverageError, gradient_coverage, verify_gradients
from dann.loop import TrainerSettings, fit


def _algorithm(cfg):
    keras.utils.set_random_seed(0)
    datasets = build_datasets(cfg)
    algorithm = build_algorithm(cfg, build_model(cfg, datasets))
    (source_x, source_y), target_x = next(iter(training_batches(datasets, 8, seed=0)))
    return algorithm, datasets, (source_x, source_y, target_x, tf.constant(5, tf.int64))


def test_correct_loop_passes(tiny_moons_cfg):
    algorithm, _, batch = _algorithm(tiny_moons_cfg)
    coverage, flow = verify_gradients(algorithm, *batch)
    assert coverage.ok and flow.ok
    assert set(coverage.by_component()) == {"feature_extractor", "label_classifier", "domain_classifier"}
    assert flow.reversal_scale == pytest.approx(-1.0, rel=1e-4)
    assert flow.norms["label_loss"]["domain_classifier"] is None
    assert flow.norms["domain_loss"]["label_classifier"] is None


def test_fit_stops_before_any_update(tiny_moons_cfg):
    algorithm, datasets, _ = _algorithm(tiny_moons_cfg)
    compute = algorithm.compute_gradients
    algorithm.compute_gradients = lambda *args: (compute(*args)[0], [])  # bug: no variable gets a gradient
    before = [v.numpy().copy() for v in algorithm.model.trainable_variables]
    with pytest.raises(GradientCoverageError):
        fit(algorithm, datasets, TrainerSettings(steps=5, batch_size=8, log_every=1, eval_every=5, steps_per_call=1))
    after = [v.numpy() for v in algorithm.model.trainable_variables]
    assert all((b == a).all() for b, a in zip(before, after))
    assert int(algorithm.optimizer.iterations) == 0


def test_gradient_coverage_report_groups_and_flags():
    a, b, c = (tf.Variable(tf.ones((2,)), name=n) for n in "abc")
    report = gradient_coverage([a, b, c], [tf.ones((2,)), None, tf.zeros((2,))], groups={"first": [a], "rest": [b, c]})
    assert not report.ok
    assert report.missing == [b.name] and report.zero == [c.name]
    assert report.by_component() == {"first": {"ok": 1, "none": 0, "zero": 0}, "rest": {"ok": 0, "none": 1, "zero": 1}}
    assert "NO gradient" in str(report)
    with pytest.raises(ValueError, match="2 gradients"):
        gradient_coverage([a, b, c], [None, None])
