import dataclasses

import pytest
import tensorflow as tf
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

import dann
from dann.algorithms import SourceOnly
from dann.config import CONFIG_DIR, build_algorithm, build_datasets, build_model, build_optimizer, compose_config, self_training_note
from dann.loop import TrainerSettings
from dann.schedules import AnnealedLearningRate, ConstantLambda, SigmoidRamp
from dann.speed import with_default_experiment

EXPERIMENTS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))


def test_base_config_composes_with_defaults():
    cfg = compose_config()
    assert cfg.schedule.adaptation._target_ == "dann.schedules.SigmoidRamp"
    assert cfg.schedule.learning_rate._target_ == "dann.schedules.AnnealedLearningRate"
    assert cfg.optimizer._target_ == "keras.optimizers.SGD"
    assert OmegaConf.is_missing(cfg, "seed") is False


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_builds(experiment, request):
    cfg = compose_config([f"+experiment={experiment}", "trainer.steps=10"])
    if "data_dir" in cfg.data:  # TFDS data: the small offline copy (skipped, saying why, without one)
        genuine = cfg.data.target == "mnist_m/original"
        cfg.data.data_dir = str(request.getfixturevalue("small_genuine_dir" if genuine else "small_mnist_m_dir"))
        if genuine:  # the small fixture has 30 training images, not the protocol's 50,000
            cfg.data.target_train_split = "train[:20]"
        cfg.data.source_train_split = "train[:512]"  # what is built does not depend on how many digits are read
    datasets = build_datasets(cfg)
    algorithm = build_algorithm(cfg, build_model(cfg, datasets))
    assert algorithm.total_steps == 10
    assert len(algorithm.model.trainable_variables) > 0


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_has_its_lower_bound(experiment):
    """`algorithm=source_only` composes with any experiment: the same recipe without adaptation or self-training."""
    bound = compose_config([f"+experiment={experiment}", "algorithm=source_only"])
    recipe = compose_config([f"+experiment={experiment}"])
    assert bound.algorithm._target_ == "dann.algorithms.bounds.SourceOnly"
    assert {**bound, "algorithm": None} == {**recipe, "algorithm": None}


def test_a_run_is_told_when_its_algorithm_cannot_take_the_experiments_self_training():
    choices = {"algorithm": "vada", "self_training": "mean_teacher"}
    vada = compose_config(["+experiment=mnist_m_self_training", "algorithm=vada"])
    assert "algorithm=vada takes no self-training" in self_training_note(vada, choices)
    dann = compose_config(["+experiment=mnist_m_self_training"])
    assert self_training_note(dann, {**choices, "algorithm": "dann"}) is None
    assert self_training_note(vada, {**choices, "self_training": "none"}) is None


def test_command_line_overrides_reach_the_objects():
    cfg = compose_config(["+experiment=moons", "optimizer.lr=0.005", "trainer.steps=2000"])
    schedule = build_optimizer(cfg).get_config()["learning_rate"]
    assert schedule["class_name"] == AnnealedLearningRate.__name__
    assert (schedule["config"]["initial_learning_rate"], schedule["config"]["total_steps"]) == (0.005, 2000)


def test_source_only_experiment_trains_without_adaptation():
    cfg = compose_config(["+experiment=moons_source_only"])
    algorithm = build_algorithm(cfg, build_model(cfg, build_datasets(cfg)))
    assert isinstance(algorithm, SourceOnly)
    assert float(algorithm.adaptation_factor(tf.constant(500))) == 0.0
    assert cfg.trainer.steps == compose_config(["+experiment=moons"]).trainer.steps


def test_group_override_swaps_the_schedule():
    cfg = compose_config(["schedule/adaptation=constant", "schedule.adaptation.value=0.5"])
    algorithm = build_algorithm(cfg, build_model(cfg, build_datasets(cfg)))
    assert isinstance(algorithm.adaptation_schedule, ConstantLambda)
    assert not isinstance(algorithm.adaptation_schedule, SigmoidRamp)


@pytest.mark.parametrize(
    "override, mentions",
    [
        ("trainer.stepz=5", "stepz"),
        ("optimizer.learning_rat=0.1", "learning_rat"),
        ("model.feature_extractor.unitz=[3]", "unitz"),
        ("trainer.steps=many", "steps"),
        ("seed=zero", "seed"),
        ("+experiment=no_such_experiment", "no_such_experiment"),
    ],
)
def test_typos_and_wrong_types_are_refused_at_composition(override, mentions):
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config([override])
    assert mentions in str(caught.value) + str(caught.value.__cause__)


def test_trainer_settings_defaults_are_the_trainer_configs():
    trainer = OmegaConf.load(CONFIG_DIR / "trainer" / "default.yaml")
    for setting in dataclasses.fields(TrainerSettings):
        if setting.default is not dataclasses.MISSING and setting.name != "seed":
            assert trainer[setting.name] == setting.default, setting.name


def test_benchmark_overrides_refine_the_default_experiment():
    expected = ["+experiment=mnist_m_paper", "trainer.precision=mixed_bfloat16"]
    assert with_default_experiment(["trainer.precision=mixed_bfloat16"]) == expected
    assert with_default_experiment(["+experiment=moons"]) == ["+experiment=moons"]


def test_mixed_bfloat16_training_runs(tmp_path):
    import keras
    import numpy as np
    from tests_support import TINY_OVERRIDES

    from dann.experiment import train

    results = train(compose_config(["+experiment=moons", "trainer.precision=mixed_bfloat16", *TINY_OVERRIDES]), tmp_path)
    assert np.isfinite(results["target_test_accuracy"])
    assert keras.config.dtype_policy().name == "float32"  # the run's policy does not outlive the model's build
    model = dann.load_model(tmp_path)
    assert model.feature_extractor.layers[0].compute_dtype == "bfloat16"  # a saved container's policy is not kept, its layers' are
    assert model(tf.zeros((3, 2))).dtype == tf.float32  # the logits layer computes in float32
