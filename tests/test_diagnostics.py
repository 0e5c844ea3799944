"""Gradient coverage: the correct loop passes; the two classic DANN bugs are caught, by name."""

import keras
import pytest
import tensorflow as tf

from dann import losses
from dann.algorithm import DANN
from dann.config import build_algorithm, build_datasets, build_model
from dann.data import training_batches
from dann.diagnostics import GradientCoverageError, gradient_coverage, gradient_flow, verify_gradients
from dann.loop import LoopSettings, fit


class LabelClassifierOnlyDANN(DANN):
    """Bug 1: gradients taken only for the label classifier's variables."""

    def compute_gradients(self, source_x, source_y, target_x, step):
        lambda_ = self.adaptation_factor(step)
        with tf.GradientTape() as tape:
            terms = self.forward(source_x, source_y, target_x, lambda_)
            loss = self.total_loss(terms)
        variables = self.model.label_classifier.trainable_variables
        return terms, list(zip(tape.gradient(loss, variables), variables))


class StopGradientDANN(DANN):
    """Bug 2: `tf.stop_gradient` on the features before the reversal layer."""

    def forward(self, source_x, source_y, target_x, lambda_, training=True):
        num_source = tf.shape(source_x)[0]
        features = self.model.feature_extractor(tf.concat([source_x, target_x], axis=0), training=training)
        class_logits = self.model.label_classifier(features[:num_source], training=training)
        domain_logits = self.model.domain_logits(tf.stop_gradient(features), lambda_, training=training)  # the bug
        return {
            "label_loss": losses.label_loss(source_y, class_logits),
            "domain_loss": losses.domain_loss(domain_logits, num_source),
        }


class NoReversalDANN(DANN):
    """Bug 3: the domain loss reaches the features, but not reversed (the reversal is bypassed)."""

    def forward(self, source_x, source_y, target_x, lambda_, training=True):
        return super().forward(source_x, source_y, target_x, -lambda_, training)


def _algorithm(cfg, cls=DANN):
    keras.utils.set_random_seed(0)
    datasets = build_datasets(cfg)
    reference = build_algorithm(cfg, build_model(cfg, datasets))
    algorithm = cls(reference.model, reference.optimizer, reference.adaptation_schedule, reference.total_steps)
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


def test_label_classifier_only_gradients_are_caught_naming_each_variable(tiny_moons_cfg):
    algorithm, _, batch = _algorithm(tiny_moons_cfg, LabelClassifierOnlyDANN)
    with pytest.raises(GradientCoverageError) as caught:
        verify_gradients(algorithm, *batch)
    message = str(caught.value)
    for network in (algorithm.model.feature_extractor, algorithm.model.domain_classifier):
        for variable in network.trainable_variables:
            assert variable.path in message
    for variable in algorithm.model.label_classifier.trainable_variables:
        assert variable.path not in message


def test_stop_gradient_before_reversal_is_caught(tiny_moons_cfg):
    algorithm, _, batch = _algorithm(tiny_moons_cfg, StopGradientDANN)
    flow = gradient_flow(algorithm, *batch[:3])
    assert flow.norms["domain_loss"]["feature_extractor"] is None
    assert flow.norms["domain_loss"]["domain_classifier"] is not None
    with pytest.raises(GradientCoverageError, match="feature_extractor gets no gradient from the domain_loss"):
        verify_gradients(algorithm, *batch)


def test_unreversed_domain_gradient_is_caught(tiny_moons_cfg):
    algorithm, _, batch = _algorithm(tiny_moons_cfg, NoReversalDANN)
    flow = gradient_flow(algorithm, *batch[:3])
    assert flow.reversal_scale == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(GradientCoverageError, match="reversal is missing or misplaced"):
        verify_gradients(algorithm, *batch)


def test_fit_stops_before_any_update(tiny_moons_cfg):
    algorithm, datasets, _ = _algorithm(tiny_moons_cfg, LabelClassifierOnlyDANN)
    before = [v.numpy().copy() for v in algorithm.model.trainable_variables]
    with pytest.raises(GradientCoverageError):
        fit(algorithm, datasets, LoopSettings(steps=5, batch_size=8, log_every=1, eval_every=5))
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
