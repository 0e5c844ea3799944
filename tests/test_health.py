"""Label-free training health: the spread of target predictions, logged at every evaluation."""

import dataclasses
import functools
import json
import logging
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

import dann.loop
from dann.algorithms import DANN, DIRTT, SourceOnly
from dann.config import build_algorithm, build_datasets, build_model, compose_config, trainer_settings
from dann.health import HealthMonitor, prediction_health
from dann.health.advice import RULES, Finding, Rule, RunContext, streak_score
from dann.health.report import health_report
from dann.loop import fit
from dann.runs import CONFIG_FILE, METRICS_FILE


def test_balanced_confident_predictions():
    health = prediction_health(50.0 * np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]])
    assert health["target_prediction_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert health["target_class_entropy"] == pytest.approx(math.log(4))
    assert health["target_largest_class_share"] == 0.25


def test_collapsed_and_uncertain_predictions():
    collapsed = prediction_health(np.tile([1.0, 0.0, 0.0], (10, 1)))
    assert collapsed["target_class_entropy"] == pytest.approx(0.0)
    assert collapsed["target_largest_class_share"] == 1.0
    uniform = prediction_health(np.zeros((10, 3)))
    assert uniform["target_prediction_entropy"] == pytest.approx(math.log(3))


def test_every_evaluation_logs_the_health_figures(tiny_run):
    lines = (tiny_run[0] / "metrics.jsonl").read_text().splitlines()
    evaluations = [json.loads(line) for line in lines if "target_test_accuracy" in line]
    keys = ("target_class_entropy", "target_largest_class_share", "target_prediction_entropy", "domain_classifier_accuracy")
    assert evaluations and all(all(key in record for key in (*keys, "proxy_a_distance_features")) for record in evaluations)


# Warnings with advice (dann.health.advice), on records written as a run writes them.

TEN_CLASSES = RunContext(num_classes=10, total_steps=1000, adaptation_steps=1000)


def _evaluation(step, **changes):
    """A healthy evaluation record of a 10-class adaptation run, with `changes`."""
    figures = {
        "step": step,
        "source_test_accuracy": 0.98,
        "target_test_accuracy": 0.9,
        "domain_classifier_accuracy": 0.6,
        "proxy_a_distance_features": 0.4,  # a linear probe: 0.6
        "target_largest_class_share": 0.12,
        "target_class_entropy": 2.29,
        "lambda": 1.0,  # this and the gradient norms: of the latest training record in a real run
        "feature_extractor_gradient_norm": 0.3,
        "label_classifier_gradient_norm": 0.05,
        "domain_classifier_gradient_norm": 0.4,
    }
    return {**figures, **changes}


def _monitor_of(records, context=TEN_CLASSES):
    monitor = HealthMonitor(context)
    raised = [(warning.rule, warning.step) for record in records for warning in monitor.observe(record)]
    return monitor, raised


def test_a_healthy_run_raises_nothing():
    records = []
    for step in range(100, 1001, 100):
        records += [{"step": step, "label_loss": 0.1, "lambda": 1.0}, _evaluation(step, domain_classifier_accuracy=0.52)]
    assert _monitor_of(records)[1] == []


BROKEN = {  # rule: figures that show its pattern
    "domain_classifier_not_learning": {"domain_classifier_accuracy": 0.5, "domain_classifier_gradient_norm": 0.0},
    "no_adaptation": {"lambda": 0.0},
    "domains_not_aligned": {"domain_classifier_accuracy": 0.99},
    "target_predictions_collapse": {"target_largest_class_share": 0.7, "target_class_entropy": 1.2},
    "source_accuracy_falls": {"source_test_accuracy": 0.5},
    "gradient_explodes_or_vanishes": {"feature_extractor_gradient_norm": 0.0},
}


def test_every_rule_is_tested_on_its_pattern():
    assert {rule.name for rule in RULES} == {*BROKEN, "label_loss_rises"}  # the last: test_the_training_label_loss_rising_warns


@pytest.mark.parametrize("rule", BROKEN)
def test_a_pattern_at_consecutive_evaluations_warns_once_with_advice(rule):
    changes = BROKEN[rule]
    records = [_evaluation(500), _evaluation(600, **changes), _evaluation(700, **changes), _evaluation(800, **changes)]
    monitor, raised = _monitor_of(records)
    assert raised == [(rule, 700)]  # held at 600 and 700: raised then, and not again at 800
    assert "algorithm" in monitor.warnings[0].advice or "optimizer." in monitor.warnings[0].advice  # names config keys


@pytest.mark.parametrize("rule", BROKEN)
def test_a_pattern_at_one_evaluation_only_does_not_warn(rule):
    records = [_evaluation(600), _evaluation(700, **BROKEN[rule]), _evaluation(800), _evaluation(900, **BROKEN[rule])]
    assert _monitor_of(records)[1] == []


def test_exploding_gradients_and_a_source_classifier_at_chance_warn():
    records = [_evaluation(step, label_classifier_gradient_norm=float("inf")) for step in (600, 700)]
    assert _monitor_of(records)[1] == [("gradient_explodes_or_vanishes", 700)]
    records = [_evaluation(step, source_test_accuracy=0.11) for step in (600, 700)]  # never better: no fall, but chance
    monitor, raised = _monitor_of(records)
    assert raised == [("source_accuracy_falls", 700)] and "chance level" in monitor.warnings[0].seen


def test_a_diverging_run_is_told_what_held_at_its_last_evaluation():
    monitor, raised = _monitor_of([_evaluation(500), _evaluation(600, target_largest_class_share=1.0)])
    assert raised == [] and monitor.latest_findings() == [
        "target_predictions_collapse: 100% of the target predictions are one class (entropy of the predicted classes 2.29 nats; "
        "2.30 when balanced)"
    ]
    with pytest.raises(dann.loop.NonFiniteLossError, match=r"At the last evaluation \(step 600\): target_predictions_collapse: 100%"):
        dann.loop._check_finite({"loss": float("nan")}, 700, None, monitor)


def test_a_domain_classifier_at_chance_with_a_live_gradient_is_well_aligned_not_idle():
    records = [_evaluation(step, domain_classifier_accuracy=0.5) for step in (600, 700, 800)]
    assert _monitor_of(records)[1] == []


def test_the_training_label_loss_rising_warns():
    records = []
    for step, loss in ((100, 0.2), (200, 0.1), (300, 0.5), (400, 0.6)):
        records += [{"step": step, "label_loss": loss}, _evaluation(step)]
    assert _monitor_of(records)[1] == [("label_loss_rises", 400)]


def test_unaligned_features_and_lambda_0_early_in_training_are_expected():
    early = [_evaluation(step, domain_classifier_accuracy=0.99, **{"lambda": 0.0}) for step in (100, 200, 300, 400)]
    assert _monitor_of(early)[1] == []
    late = [_evaluation(step, domain_classifier_accuracy=0.99, **{"lambda": 0.0}) for step in (500, 600)]
    assert _monitor_of(early + late)[1] == [("no_adaptation", 600), ("domains_not_aligned", 600)]


def test_a_source_only_run_is_told_it_does_not_adapt_and_not_that_its_domain_classifier_is_idle():
    source_only = RunContext(num_classes=10, total_steps=1000, adaptation_steps=0)
    records = [_evaluation(step, domain_classifier_accuracy=0.5, domain_classifier_gradient_norm=0.0) for step in (600, 700)]
    monitor, raised = _monitor_of(records, source_only)
    assert raised == [("no_adaptation", 700)]
    assert "does not adapt" in monitor.warnings[0].seen


def test_a_domain_classifier_idle_by_design_is_not_reported_as_not_learning():
    # DIRT-T refines from step 700 on: no domain loss trains, so its gradient is zero by design
    refining_from_700 = RunContext(num_classes=10, total_steps=1000, adaptation_steps=700)
    idle = {"domain_classifier_accuracy": 0.5, "domain_classifier_gradient_norm": 0.0}
    refining = [_evaluation(step, **idle) for step in (800, 900, 1000)]
    assert _monitor_of(refining, refining_from_700)[1] == []
    before_refinement = [_evaluation(step, **idle) for step in (600, 700)]
    assert _monitor_of(before_refinement, refining_from_700)[1] == [("domain_classifier_not_learning", 700)]


def test_the_health_report_of_a_dirt_t_run_knows_when_its_refinement_began(tmp_path):
    cfg = compose_config(["+experiment=moons", "algorithm=dirt_t", "algorithm.refinement_fraction=0.5", "trainer.steps=1000"])
    OmegaConf.save(cfg, tmp_path / CONFIG_FILE)
    idle = {"domain_classifier_accuracy": 0.5, "domain_classifier_gradient_norm": 0.0}
    with open(tmp_path / METRICS_FILE, "w") as stream:  # the domain classifier idle from step 500 on, as refinement makes it
        stream.writelines(json.dumps(_evaluation(step, **idle)) + "\n" for step in (600, 700, 800))
    assert health_report(tmp_path)[1].warnings == []
    cfg.algorithm.refinement_fraction = 0.1  # refinement from step 900: the same records now show a stalled classifier
    OmegaConf.save(cfg, tmp_path / CONFIG_FILE)
    assert [warning.rule for warning in health_report(tmp_path)[1].warnings] == ["domain_classifier_not_learning"]


def test_adaptation_steps_are_all_steps_but_dirt_t_refinement_and_none_for_the_bounds():
    assert DANN.adaptation_steps(1000) == 1000
    assert SourceOnly.adaptation_steps(1000) == 0
    assert DIRTT.adaptation_steps(1000, refinement_fraction=0.25) == 750
    assert DIRTT.adaptation_steps(1000) == round(1000 * (1 - DIRTT.settings()["refinement_fraction"][1]))


def test_figures_a_run_did_not_log_are_not_checked():
    old = [{"step": step, "source_test_accuracy": 0.98, "target_test_accuracy": 0.9} for step in (600, 700, 800)]
    assert _monitor_of(old)[1] == []


def test_streak_score_is_the_best_level_held_at_consecutive_evaluations():
    assert streak_score([0.1, 0.9, 0.2, 0.5, 0.6], consecutive=2) == 0.5
    assert streak_score([None, 0.9, None], consecutive=2) is None


def test_warnings_are_logged_once_reach_the_results_and_survive_a_resume(tiny_moons_cfg, tmp_path, monkeypatch, caplog):
    always = Rule("always", lambda now, earlier, context: Finding(1.0, "seen"), threshold=0.5, needs=(), advice="nothing")
    monkeypatch.setattr(dann.loop, "HealthMonitor", functools.partial(HealthMonitor, rules=(always,)))
    datasets = build_datasets(tiny_moons_cfg)
    algorithm = build_algorithm(tiny_moons_cfg, build_model(tiny_moons_cfg, datasets))
    settings = dataclasses.replace(trainer_settings(tiny_moons_cfg), eval_every=10, checkpoint_every=10)
    with caplog.at_level(logging.WARNING, logger="dann.loop"):
        first = fit(algorithm, datasets, settings, tmp_path)
    assert [(w["rule"], w["step"], w["seen"]) for w in first["health"]] == [("always", 20, "seen")]
    assert sum("health: always (step 20): seen. Try: nothing" in m for m in caplog.messages) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dann.loop"):
        resumed = fit(algorithm, datasets, dataclasses.replace(settings, steps=40), tmp_path)
    assert resumed["resumed_from_step"] == 20 and resumed["health"] == first["health"]
    assert not any("health:" in m for m in caplog.messages)
