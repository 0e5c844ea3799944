"""Every algorithm of the family: it builds from config, trains, passes the gradient checks, and its planted bugs are caught.

The planted-bug tests run over all algorithms (DomainBed style): each bug is planted the
same way for every algorithm it applies to, and must be named by `verify_gradients`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class
from tests_support import TINY_OVERRIDES

import dann.layers
import dann.losses
import dann.self_training
import dann.vat
from dann.algorithms import CDAN, DANN, DIRTT, VADA, SourceOnly
from dann.algorithms.dann import classification_terms, domain_terms
from dann.config import CONFIG_DIR, build_algorithm, build_datasets, build_model, check_algorithm, compose_config
from dann.data import training_batches
from dann.experiment import train
from dann.gradient_checks import GradientCoverageError, gradient_flow, verify_gradients
from dann.layers import MultilinearMap
from dann.loop import TrainerSettings, fit
from dann.models import COMPONENTS
from dann.precision import dtype_policy
from dann.schedules import ConstantLambda

ALGORITHMS = sorted(path.stem for path in (CONFIG_DIR / "algorithm").glob("*.yaml"))
ADVERSARIAL = [name for name in ALGORITHMS if name not in ("source_only", "target_only")]
MOONS = ["+experiment=moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES]


def _built(name, *overrides):
    """The algorithm `name` on tiny moons, its datasets, and one batch pair with a step."""
    keras.utils.set_random_seed(0)
    cfg = compose_config([*MOONS, f"algorithm={name}", *overrides])
    datasets = build_datasets(cfg)
    algorithm = build_algorithm(cfg, build_model(cfg, datasets))
    (source_x, source_y), target_x = next(iter(training_batches(algorithm.training_datasets(datasets), 8, seed=0)))
    return algorithm, datasets, (source_x, source_y, target_x, tf.constant(5, tf.int64))


def test_every_algorithm_is_known_wherever_it_must_be():
    """The checklist of docs/architecture.md, "Adding an algorithm": a place left out fails here."""
    import dann.algorithms
    from dann.config import ALGORITHM_SCHEMAS

    assert set(ALGORITHMS) == {"dann", "cdan", "cdan_e", "mcc", "im", "vada", "dirt_t", "source_only", "target_only"}
    for name, algorithm in ALGORITHM_SCHEMAS.items():
        assert algorithm.__name__ in dann.algorithms.__all__, f"{algorithm.__name__}: export it from dann/algorithms/__init__.py"
        assert f"`{name}`" in dann.algorithms.__doc__, f"{name}: add it to the table of dann/algorithms/__init__.py"
        assert name in ALGORITHMS, f"{name}: write configs/algorithm/{name}.yaml"
    for name in ALGORITHMS:  # each option file composes to a registered class (its schema: /schema/algorithm/<name>)
        assert get_class(compose_config([*MOONS, f"algorithm={name}"]).algorithm._target_) in ALGORITHM_SCHEMAS.values()
    for recipe in (path.stem for path in (CONFIG_DIR / "recipe").glob("*.yaml") if path.stem != "none"):
        for name in ADVERSARIAL:  # a recipe says how each adapting algorithm runs in it
            assert (CONFIG_DIR / "recipe_algorithm" / f"{recipe}_{name}.yaml").exists(), f"recipe {recipe}: no settings for {name}"
    for choice in (path.stem for path in (CONFIG_DIR / "self_training").glob("*.yaml") if path.stem != "none"):
        for name in ALGORITHMS:  # a self-training choice reaches every algorithm that can self-train, and no other
            can = "pseudo_label_weight" in get_class(compose_config([*MOONS, f"algorithm={name}"]).algorithm._target_).settings()
            has = (CONFIG_DIR / "self_training_algorithm" / f"{choice}_{name}.yaml").exists()
            assert has == can, f"self_training {choice}: {name} " + ("needs settings" if can else "cannot self-train")
            cfg = compose_config([*MOONS, f"algorithm={name}", f"self_training={choice}"])
            assert (cfg.algorithm.get("pseudo_label_weight", 0.0) > 0) == can
    genuine = compose_config(["+experiment=mnist_m_genuine"]).algorithm  # the one choice with its own threshold
    assert (genuine.pseudo_label_threshold, genuine.pseudo_label_weight) == (0.9, 1.0)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_algorithm_trains_and_passes_its_gradient_checks(name, tmp_path):
    algorithm, _, batch = _built(name)
    coverage, flow = verify_gradients(algorithm, *batch)
    assert coverage.ok and flow.ok, (coverage, flow)
    assert set(flow.norms) == set(algorithm.gradient_paths())
    results = train(compose_config([*MOONS, f"algorithm={name}", "trainer.plots=false"]), tmp_path)
    assert 0.0 <= results["target_test_accuracy"] <= 1.0
    metrics = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert metrics and all("NaN" not in line for line in metrics)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_gradient_norms_per_component_are_those_of_the_update(name):
    algorithm, _, batch = _built(name)
    metrics, pairs = algorithm.compute_gradients(*batch)
    gradients = {id(variable): gradient for gradient, variable in pairs}
    for component in COMPONENTS:
        variables = getattr(algorithm.model, component).trainable_variables
        expected = np.sqrt(sum(float(tf.reduce_sum(gradients[id(v)] ** 2)) for v in variables))
        np.testing.assert_allclose(float(metrics[f"{component}_gradient_norm"]), expected, rtol=1e-5)


def test_without_a_domain_loss_the_domain_classifier_gradient_norm_is_zero():
    algorithm, _, batch = _built("dann", "algorithm.domain_loss_weight=0")
    metrics, _ = algorithm.compute_gradients(*batch)
    assert float(metrics["domain_classifier_gradient_norm"]) == 0.0
    assert float(metrics["label_classifier_gradient_norm"]) > 0.0


# Planted bugs.


@pytest.mark.parametrize("name", ALGORITHMS)
def test_gradients_for_only_some_variables_are_caught_naming_each(name):
    algorithm, _, batch = _built(name)
    compute = algorithm.compute_gradients

    def label_classifier_only(*args):
        metrics, pairs = compute(*args)
        kept = {id(v) for v in algorithm.model.label_classifier.trainable_variables}
        return metrics, [(g, v) for g, v in pairs if id(v) in kept]

    algorithm.compute_gradients = label_classifier_only
    with pytest.raises(GradientCoverageError) as caught:
        verify_gradients(algorithm, *batch)
    for network in (algorithm.model.feature_extractor, algorithm.model.domain_classifier):
        for variable in network.trainable_variables:
            assert variable.path in str(caught.value)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_stop_gradient_at_the_reversal_is_caught(name, monkeypatch):
    algorithm, _, batch = _built(name)
    monkeypatch.setattr(dann.layers, "reverse_gradient", lambda inputs, lambda_: tf.stop_gradient(inputs))
    flow = gradient_flow(algorithm, *batch[:3])
    assert flow.norms["domain_loss"]["feature_extractor"] is None
    assert flow.norms["domain_loss"]["domain_classifier"] is not None
    with pytest.raises(GradientCoverageError, match="feature_extractor gets no gradient from the domain_loss"):
        verify_gradients(algorithm, *batch)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_unreversed_domain_gradient_is_caught(name, monkeypatch):
    algorithm, _, batch = _built(name)
    monkeypatch.setattr(dann.layers, "reverse_gradient", lambda inputs, lambda_: tf.identity(inputs))
    assert gradient_flow(algorithm, *batch[:3]).reversal_scale == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(GradientCoverageError, match="reversal is missing or misplaced"):
        verify_gradients(algorithm, *batch)


def _leaky_forward(algorithm, source_x, source_y, target_x, lambda_, training=True):
    """`SourceOnly.forward` without the `tf.stop_gradient` that keeps the probe off the features: the bug."""
    num_source = tf.shape(source_x)[0]
    features = algorithm.features(source_x, target_x, training)
    class_logits = algorithm.model.label_classifier(features, training=training)
    domain_logits = algorithm.model.domain_logits(features, None, training=training)
    return {**classification_terms(class_logits, source_y, num_source), **domain_terms(domain_logits, num_source)}


@pytest.mark.parametrize("name", ["source_only", "target_only"])
def test_a_bound_whose_domain_loss_reaches_the_features_is_caught(name):
    algorithm, _, batch = _built(name)
    algorithm.forward = lambda *args, **kwargs: _leaky_forward(algorithm, *args, **kwargs)
    with pytest.raises(GradientCoverageError, match="feature_extractor gets a gradient from the domain_loss, which must not reach it"):
        verify_gradients(algorithm, *batch)


def _trainable_perturbation(classify, inputs, logits, radius, noise, xi=1e-6):
    direction = xi * tf.math.l2_normalize(noise.normal(tf.shape(inputs)), axis=-1)
    with tf.GradientTape() as tape:
        tape.watch(direction)
        divergence = dann.losses.kl_divergence(logits, classify(inputs + direction))
    return radius * tf.math.l2_normalize(tape.gradient(divergence, direction), axis=-1)  # no tf.stop_gradient: the bug


def _plant_trainable_constant(algorithm, monkeypatch):
    """Makes a tensor that the algorithm declares constant depend on the model's variables."""
    if isinstance(algorithm, DIRTT):  # the teacher shares the student's variables instead of a copy
        algorithm.teacher = keras.Sequential([algorithm.model.feature_extractor, algorithm.model.label_classifier])
    elif isinstance(algorithm, VADA):
        monkeypatch.setattr(dann.vat, "adversarial_perturbation", _trainable_perturbation)
    elif isinstance(algorithm, CDAN):
        algorithm.conditioning_probabilities = lambda logits: tf.nn.softmax(logits)


@pytest.mark.parametrize("name", [name for name in ALGORITHMS if name in ("cdan", "cdan_e", "vada", "dirt_t")])
def test_a_constant_that_gradients_pass_through_is_caught(name, monkeypatch):
    algorithm, _, batch = _built(name)
    _plant_trainable_constant(algorithm, monkeypatch)
    with pytest.raises(GradientCoverageError, match="must be a constant, but gradients reach"):
        verify_gradients(algorithm, *batch)


SELF_TRAINING = ["algorithm.pseudo_label_weight=1", "algorithm.pseudo_label_threshold=0", "algorithm.pseudo_label_shift=0"]


@pytest.mark.parametrize("teacher", ["algorithm.teacher_decay=0", "algorithm.teacher_decay=0.9"])
def test_self_training_and_class_balance_pass_the_gradient_checks(teacher):
    algorithm, _, batch = _built("dann", *SELF_TRAINING, teacher, "algorithm.class_balance_weight=1")
    coverage, flow = verify_gradients(algorithm, *batch)
    assert coverage.ok and flow.ok, (coverage, flow)
    for loss in ("pseudo_label_loss", "class_imbalance"):
        assert flow.norms[loss]["domain_classifier"] is None
        assert flow.norms[loss]["feature_extractor"] is not None


def test_pseudo_labels_that_pass_gradients_are_caught(monkeypatch):
    algorithm, _, batch = _built("dann", *SELF_TRAINING)
    monkeypatch.setattr(dann.self_training.tf, "stop_gradient", tf.identity)  # the bug: confidence differentiable
    with pytest.raises(GradientCoverageError, match="pseudo_label_confidence must be a constant"):
        verify_gradients(algorithm, *batch)


def test_mean_teacher_is_a_moving_average_of_the_weights():
    algorithm, _, (source_x, source_y, target_x, _) = _built("dann", *SELF_TRAINING, "algorithm.teacher_decay=0.5")

    def classifier():
        return [w.numpy().copy() for w in algorithm.model.feature_extractor.weights + algorithm.model.label_classifier.weights]

    expected = classifier()  # the teacher starts as a copy
    for step in range(3):
        before = classifier()
        algorithm.update(source_x, source_y, target_x, tf.constant(step, tf.int64))
        expected = [0.5 * t + 0.5 * w for t, w in zip(expected, before)]
    for teacher_weight, value in zip(algorithm.mean_teacher.weights, expected):
        np.testing.assert_allclose(teacher_weight.numpy(), value, rtol=1e-5, atol=1e-7)


def test_the_mean_teacher_is_evaluated_and_deployed(tmp_path):
    cfg = compose_config([*MOONS, *SELF_TRAINING, "algorithm.teacher_decay=0.9", "trainer.plots=false"])
    datasets = build_datasets(cfg)
    algorithm = build_algorithm(cfg, build_model(cfg, datasets))
    assert algorithm.classifier() is algorithm.mean_teacher
    results = fit(algorithm, datasets, TrainerSettings(steps=20, batch_size=16, log_every=10, eval_every=20, progress=False))
    for weight, teacher_weight in zip(
        algorithm.model.feature_extractor.weights + algorithm.model.label_classifier.weights, algorithm.mean_teacher.weights
    ):
        np.testing.assert_array_equal(weight.numpy(), teacher_weight.numpy())
    assert 0.0 <= results["target_test_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="deploys another network .* Use trainer.select=last"):
        fit(algorithm, datasets, TrainerSettings(steps=20, batch_size=16, log_every=10, eval_every=20, progress=False, select="dev_risk"))


def test_random_translation_moves_whole_images_within_the_bound():
    images = tf.reshape(tf.range(4 * 9 * 9, dtype=tf.float32), (4, 9, 9, 1))
    moved = dann.self_training.random_translation(images, 2, tf.random.Generator.from_seed(0))
    for image, shifted in zip(images.numpy(), moved.numpy()):
        centre = shifted[2:-2, 2:-2, 0]  # never filled from the edges with shifts of at most 2
        matches = [
            (dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if np.array_equal(centre, image[2 - dy : 7 - dy, 2 - dx : 7 - dx, 0])
        ]
        assert len(matches) == 1
    with pytest.raises(ValueError, match="pseudo_label_shift applies to images"):
        dann.self_training.augment(tf.zeros([4, 2]), 2, 0.0, tf.random.Generator.from_seed(0))


# Configuration.


@pytest.mark.parametrize(
    "override, message",
    [
        ("algorithm.vat_radius=-1", "algorithm.vat_radius must be > 0"),
        ("algorithm.refinement_fraction=1.5", r"algorithm.refinement_fraction must be in \[0, 1\)"),
        ("algorithm.teacher_update_every=0", "algorithm.teacher_update_every must be an integer >= 1"),
        ("algorithm.pseudo_label_threshold=1", r"algorithm.pseudo_label_threshold must be in \[0, 1\)"),
        ("algorithm.pseudo_label_shift=-1", "algorithm.pseudo_label_shift must be an integer >= 0"),
    ],
)
def test_hyperparameter_out_of_range_is_refused_before_any_work(override, message):
    algorithm = "dann" if "pseudo_label" in override else "dirt_t"
    cfg = compose_config([*MOONS, f"algorithm={algorithm}", override])
    with pytest.raises(ValueError, match=message):
        check_algorithm(cfg)


def test_unknown_algorithm_and_unknown_hyperparameter_are_refused_at_composition():
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config([*MOONS, "algorithm=dan"])
    assert "algorithm/dan" in str(caught.value) and all(name in str(caught.value) for name in ALGORITHMS)
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config([*MOONS, "algorithm=cdan", "algorithm.vat_radius=1"])
    assert "vat_radius" in str(caught.value) + str(caught.value.__cause__)


# Algorithm-specific behaviour.


def test_source_only_trains_exactly_as_dann_with_lambda_zero():
    weights = []
    for algorithm_class, schedule in ((SourceOnly, None), (DANN, ConstantLambda(0.0))):
        keras.utils.set_random_seed(0)
        cfg = compose_config(MOONS)
        datasets = build_datasets(cfg)
        reference = build_algorithm(cfg, build_model(cfg, datasets))
        algorithm = algorithm_class(reference.model, reference.optimizer, schedule, total_steps=20)
        fit(algorithm, datasets, TrainerSettings(steps=20, batch_size=16, log_every=10, eval_every=20, progress=False))
        weights.append([v.numpy() for v in algorithm.model.trainable_variables])
    for source_only, dann_zero in zip(*weights):
        np.testing.assert_array_equal(source_only, dann_zero)


def test_target_only_trains_on_the_target_labels():
    algorithm, datasets, _ = _built("target_only")
    swapped = algorithm.training_datasets(datasets)
    assert swapped.source_train is datasets.target_train and swapped.source_test is datasets.target_test
    assert swapped.augment_source is None


def test_dirt_t_refines_with_a_teacher_snapshot_on_schedule():
    algorithm, _, (source_x, source_y, target_x, _) = _built(
        "dirt_t", "algorithm.refinement_fraction=0.5", "algorithm.teacher_update_every=3", "trainer.steps=10"
    )
    assert algorithm.refinement_start == 5
    assert algorithm.run_adaptation_steps() == 5  # what the health monitor reads: the domain classifier stops there

    def student():
        return [w.numpy().copy() for w in algorithm.model.feature_extractor.weights + algorithm.model.label_classifier.weights]

    def teacher():
        return [w.numpy().copy() for w in algorithm.teacher.weights]

    snapshots = {}
    for step in range(10):
        before = student()
        algorithm.update(source_x, source_y, target_x, tf.constant(step, tf.int64))
        assert float(algorithm.refining.numpy()) == float(step >= 5)
        snapshots[step] = all(np.array_equal(t, s) for t, s in zip(teacher(), before))
    assert [step for step, taken in snapshots.items() if taken] == [0, 5, 8]  # 0: the teacher starts as a copy


def test_dirt_t_refinement_weighs_class_balance_and_source_loss():
    algorithm, _, (source_x, source_y, target_x, step) = _built(
        "dirt_t", "algorithm.class_balance_weight=2", "algorithm.refinement_source_weight=3"
    )
    coverage, flow = verify_gradients(algorithm, source_x, source_y, target_x, step)
    assert coverage.ok and flow.ok, (coverage, flow)
    assert flow.norms["class_imbalance"]["feature_extractor"] is not None
    assert flow.norms["class_imbalance"]["domain_classifier"] is None
    terms = algorithm.forward(source_x, source_y, target_x, tf.constant(1.0))
    assert float(terms["class_imbalance"]) > 0
    algorithm.refining.assign(0.0)
    np.testing.assert_allclose(float(algorithm.total_loss(terms)), float(VADA.total_loss(algorithm, terms)), rtol=1e-6)
    algorithm.refining.assign(1.0)
    target_terms = algorithm.target_entropy_weight * (terms["target_entropy"] + terms["target_vat"])
    refinement = target_terms + algorithm.teacher_weight * terms["teacher_kl"] + 2 * terms["class_imbalance"]
    np.testing.assert_allclose(float(algorithm.total_loss(terms)), float(refinement + 3 * terms["label_loss"]), rtol=1e-6)
    algorithm.refinement_source_weight = 0.0  # the paper's refinement: the target alone
    np.testing.assert_allclose(float(algorithm.total_loss(terms)), float(refinement), rtol=1e-6)


def test_cdan_model_carries_the_multilinear_map_and_reloads(tmp_path):
    algorithm, _, (source_x, _, target_x, _) = _built("cdan")
    model = algorithm.model
    assert isinstance(model.domain_conditioning, MultilinearMap)
    features = model.feature_extractor(source_x)
    assert model.domain_input(features).shape == (8, features.shape[1] * 2)  # 15 features x 2 classes, exact map
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(restored.domain_logits(features, None).numpy(), model.domain_logits(features, None).numpy(), rtol=1e-5)


def test_cdan_needs_a_model_with_the_map():
    algorithm, _, _ = _built("dann")
    with pytest.raises(ValueError, match=r"domain_conditioning=CDAN.domain_conditioning\(\)"):
        CDAN(algorithm.model, algorithm.optimizer, ConstantLambda(1.0), total_steps=10)


def test_cdan_refuses_map_dimensions_other_than_its_models():
    algorithm, _, _ = _built("cdan")  # its map: the defaults, max_full_dim 4096, randomized_dim 1024
    with pytest.raises(ValueError, match="built with max_full_dim=4096, randomized_dim=1024. Received: max_full_dim=10"):
        CDAN(algorithm.model, algorithm.optimizer, ConstantLambda(1.0), total_steps=10, max_full_dim=10)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_an_algorithm_config_sets_only_what_differs_from_its_constructor(name):
    """Defaults have one source, the constructor: an option file that repeats one, or disagrees with it unasked, fails."""
    from omegaconf import OmegaConf

    path = CONFIG_DIR / "algorithm" / f"{name}.yaml"
    written = {key: value for key, value in OmegaConf.to_container(OmegaConf.load(path)).items() if key != "defaults"}
    cfg = compose_config([*MOONS, f"algorithm={name}"])
    defaults = {key: default for key, (_, default) in get_class(cfg.algorithm._target_).settings().items()}
    composed = OmegaConf.to_container(cfg.algorithm, resolve=True)
    assert set(composed) == {"_target_", *defaults}, f"{name}: the config's keys are not the constructor's hyperparameters"
    for key, value in composed.items():
        if key == "_target_" or key in written:
            continue
        assert value == defaults[key], f"{name}: {key}={value!r} composed, {defaults[key]!r} in the constructor"
    repeated = [key for key, value in written.items() if not str(value).startswith("${") and value == defaults[key]]
    assert repeated == [], f"{path.name} repeats the constructor's defaults of {repeated}"


def test_each_algorithm_accepts_exactly_the_hyperparameters_it_uses():
    from dann.config import ALGORITHM_SCHEMAS

    for algorithm in ALGORITHM_SCHEMAS.values():  # every range rule belongs to an accepted hyperparameter
        assert set(algorithm.HYPERPARAMETERS) <= set(algorithm.settings()), algorithm.__name__
    # DIRT-T extends VADA: VADA's hyperparameters, with VADA's defaults, and its own.
    assert {**VADA.settings(), **DIRTT.settings()} == DIRTT.settings()
    own = {"refinement_fraction", "teacher_weight", "teacher_update_every", "class_balance_weight", "refinement_source_weight"}
    assert set(DIRTT.settings()) - set(VADA.settings()) == own
    # DANN's self-training settings are not VADA's or CDAN's: passing one is an error, not silently ignored.
    model = _built("vada")[0].model
    for algorithm in (VADA, DIRTT):
        with pytest.raises(TypeError, match="unexpected keyword argument 'pseudo_label_weight'"):
            algorithm(model, keras.optimizers.SGD(0.01), lambda progress: 1.0, total_steps=10, pseudo_label_weight=1.0)
    cdan_model = _built("cdan")[0].model
    with pytest.raises(TypeError, match="unexpected keyword argument 'teacher_decay'"):
        CDAN(cdan_model, keras.optimizers.SGD(0.01), lambda progress: 1.0, total_steps=10, teacher_decay=0.9)


def test_multilinear_map_is_the_outer_product_or_its_randomised_approximation():
    features, probabilities = tf.random.normal((4, 6)), tf.nn.softmax(tf.random.normal((4, 3)))
    exact = MultilinearMap(max_full_dim=100)([features, probabilities])
    np.testing.assert_allclose(exact.numpy().reshape(4, 6, 3), np.einsum("nf,nc->nfc", features.numpy(), probabilities.numpy()), rtol=1e-6)
    randomized = MultilinearMap(max_full_dim=10, randomized_dim=4096, seed=1)([features, probabilities])
    assert randomized.shape == (4, 4096)
    # Inner products of the randomised map approximate those of the exact map (Long et al., theorem 1).
    np.testing.assert_allclose((randomized @ tf.transpose(randomized)).numpy(), (exact @ tf.transpose(exact)).numpy(), atol=0.35, rtol=0.2)


def _small_cnn(policy: str, weights=None) -> keras.Sequential:
    with dtype_policy(policy):
        model = keras.Sequential(
            [keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.Flatten(), keras.layers.Dense(5, dtype="float32")]
        )
    model.build((None, 12, 12, 3))
    if weights is not None:
        model.set_weights(weights)
    return model


def _cosines(a: tf.Tensor, b: tf.Tensor) -> np.ndarray:
    a, b = tf.reshape(a, (a.shape[0], -1)), tf.reshape(b, (b.shape[0], -1))
    return (tf.reduce_sum(a * b, axis=1) / (tf.norm(a, axis=1) * tf.norm(b, axis=1))).numpy()


def test_vat_direction_is_the_hessian_power_iteration_in_float32_and_in_bfloat16():
    keras.utils.set_random_seed(0)
    inputs = tf.random.normal((6, 12, 12, 3))
    float32_model = _small_cnn("float32")

    def perturb(model):
        return dann.vat.adversarial_perturbation(model, inputs, model(inputs), 2.0, tf.random.Generator.from_seed(1))

    exact = perturb(float32_model)
    # The power iteration's step, H d, by a finite difference of the divergence's gradient at a
    # step well above float32's rounding: the exact product must point the same way.
    direction = dann.vat._unit(tf.random.Generator.from_seed(1).normal(tf.shape(inputs)))
    with tf.GradientTape() as tape:
        step = 1e-2 * direction
        tape.watch(step)
        divergence = dann.losses.kl_divergence(float32_model(inputs), float32_model(inputs + step))
    assert _cosines(exact, tape.gradient(divergence, step)).min() > 0.98
    # bfloat16 (8-bit mantissa) finds nearly the same direction; a finite difference at a step
    # as small as Miyato et al.'s 1e-6 found noise there.
    bfloat16_model = _small_cnn("mixed_bfloat16", float32_model.get_weights())
    assert _cosines(perturb(bfloat16_model), exact).mean() > 0.9


def test_vat_perturbation_has_the_radius_and_is_a_constant():
    model = keras.Sequential([keras.layers.Dense(3)])
    inputs = tf.random.normal((5, 4))
    model.build(inputs.shape)
    with tf.GradientTape(persistent=True) as tape:
        loss, perturbation = dann.vat.virtual_adversarial_loss(model, inputs, model(inputs), 0.5, tf.random.Generator.from_seed(0))
    np.testing.assert_allclose(tf.norm(perturbation, axis=1).numpy(), 0.5, rtol=1e-4)
    assert all(g is None for g in tape.gradient(perturbation, model.trainable_variables))
    assert all(g is not None for g in tape.gradient(loss, model.trainable_variables))
    assert float(loss) > 0.0


def test_information_maximisation_and_class_confusion_reach_the_classifier_and_pass_the_checks():
    terms = ["algorithm.target_entropy_weight=1", "algorithm.class_balance_weight=1", "algorithm.class_confusion_weight=1"]
    algorithm, _, batch = _built("dann", *terms)
    coverage, flow = verify_gradients(algorithm, *batch)
    assert coverage.ok and flow.ok, (coverage, flow)
    for term in ("target_entropy", "class_imbalance", "class_confusion"):
        assert set(name for name, norm in flow.norms[term].items() if norm) == {"feature_extractor", "label_classifier"}
