"""The config schema, and the builders that turn a composed config into objects.

The schema (`TrainConfig`) types every scalar setting, so Hydra refuses unknown keys
and wrong types before anything is built. Networks, data, optimizers and schedules
are Hydra `_target_` nodes; see `configs/`.
"""

from __future__ import annotations

import functools
import importlib.resources
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, make_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import keras
import tensorflow as tf
from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from dann.algorithms import CDAN, DANN, DIRTT, VADA, Algorithm, SourceOnly, TargetOnly
from dann.algorithms.base import FEATURE_PASSES
from dann.data import DomainDatasets
from dann.devices import STRATEGIES
from dann.gradient_checks import GradientCoverageError
from dann.loop import NonFiniteLossError, TrainerSettings
from dann.models import AdaptationModel, build_adaptation_model
from dann.precision import PRECISIONS, PrecisionChoice, choose_precision, dtype_policy, probe_bfloat16_speedup
from dann.selection import SELECT_OPTIONS

# The configs: `configs/` in a checkout, installed as the package `dann.configs` (pyproject.toml).
CONFIG_PACKAGE = "dann.configs"
CONFIG_PATH = f"pkg://{CONFIG_PACKAGE}"  # as the commands' `hydra.main` reads them
CONFIG_DIR = Path(str(importlib.resources.files(CONFIG_PACKAGE)))
# Errors whose message says what to fix: commands show them in one line, without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, InstantiationException, NonFiniteLossError, GradientCoverageError)


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """For a command: an error a user can act on (`USER_ERRORS`: a missing file or dataset, a wrong value)
    ends it with the error's message on one line and exit status 1; any other exception keeps its traceback."""
    try:
        yield
    except USER_ERRORS as error:
        sys.exit(f"{type(error).__name__}: {error}")
    except MissingMandatoryValue as error:
        sys.exit(f"{error.full_key} is not set: pass {error.full_key}=... on the command line.")


@dataclass
class ModelConfig:
    """`_target_` nodes of the three networks; the heads' output widths are set by the builder."""

    feature_extractor: Any = MISSING
    label_classifier: Any = MISSING
    domain_classifier: Any = MISSING


@dataclass
class ScheduleConfig:
    """`_target_` nodes of the lambda schedule and of the learning-rate schedule."""

    adaptation: Any = MISSING
    learning_rate: Any = MISSING


def closed_set(name: str, values: Sequence[str]) -> type[Enum]:
    """An enum whose members are `values`: a schema field of this type refuses any other value at composition."""
    return Enum(name, {value: value for value in values})


Precision = closed_set("Precision", PRECISIONS)
FeaturePass = closed_set("FeaturePass", FEATURE_PASSES)
Select = closed_set("Select", SELECT_OPTIONS)
Strategy = closed_set("Strategy", STRATEGIES)


@dataclass
class TrainerConfig:
    """Types of the trainer settings; their defaults are in `configs/trainer/default.yaml`, their
    meaning in `dann.loop.TrainerSettings`, `dann.algorithms.Algorithm`, `dann.devices` and `dann.train`."""

    steps: int = MISSING
    batch_size: int = MISSING
    log_every: int = MISSING
    eval_every: int = MISSING
    eval_batch_size: int = MISSING
    steps_per_call: int = MISSING
    jit_compile: bool = MISSING
    precision: Precision = MISSING
    feature_pass: FeaturePass = MISSING
    checkpoint_every: int = MISSING
    keep_checkpoints: int = MISSING
    progress: bool = MISSING
    select: Select = MISSING
    strategy: Strategy = MISSING
    cpu_devices: int = MISSING
    deterministic: bool = MISSING
    overwrite: bool = MISSING
    plots: bool = MISSING


@dataclass
class TrainConfig:
    """The whole run: what `python -m dann.train` composes."""

    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: Any = MISSING
    data: Any = MISSING
    optimizer: Any = MISSING
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    cache_dir: Optional[str] = None


# The classes behind `configs/algorithm/*.yaml`; each option file extends `/schema/algorithm/<name>`.
ALGORITHM_SCHEMAS = {"dann": DANN, "cdan": CDAN, "vada": VADA, "dirt_t": DIRTT, "source_only": SourceOnly, "target_only": TargetOnly}


def algorithm_schema(algorithm: type[Algorithm]) -> type:
    """A structured config of `algorithm`'s hyperparameters (`Algorithm.settings`, its constructor's), with `_target_`.

    Hydra then refuses an unknown hyperparameter or a wrong type at composition.
    """
    fields = [("_target_", str, field(default=f"{algorithm.__module__}.{algorithm.__qualname__}"))]
    fields += [(name, hint, field(default=default)) for name, (hint, default) in algorithm.settings().items()]
    return make_dataclass(f"{algorithm.__name__}Config", fields)


def register_configs() -> None:
    """Makes the schemas available to the configs: `train_schema` and `/schema/algorithm/<name>`."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for name, algorithm in ALGORITHM_SCHEMAS.items():
        store.store(group="schema/algorithm", name=name, node=algorithm_schema(algorithm))


def algorithm_hyperparameters(cfg: DictConfig) -> dict:
    """`cfg.algorithm` without `_target_`: the hyperparameters, by name."""
    return {key: value for key, value in OmegaConf.to_container(cfg.algorithm, resolve=True).items() if key != "_target_"}


def check_algorithm(cfg: DictConfig) -> None:
    """Checks `cfg.algorithm`'s hyperparameters against their ranges, before any work (the constructor checks them again)."""
    get_class(cfg.algorithm._target_).check_hyperparameters(**algorithm_hyperparameters(cfg))


def self_training_note(cfg: DictConfig, choices: Mapping[str, str | None]) -> str | None:
    """A line for a run whose `self_training` choice its algorithm cannot take (it trains without), else `None`.

    `choices`: the config group choices (Hydra's `runtime.choices`).
    """
    choice = choices.get("self_training") or "none"
    if choice == "none" or "pseudo_label_weight" in cfg.algorithm:
        return None
    return f"algorithm={choices.get('algorithm')} takes no self-training: this run trains without self_training={choice}"


def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Composes `configs/<config_name>.yaml` with command-line style overrides, outside a Hydra app.

    Example:
        >>> cfg = compose_config(["+experiment=moons", "trainer.steps=100"])
    """
    register_configs()
    with initialize_config_module(CONFIG_PACKAGE, version_base="1.3"):
        return with_plain_choices(compose(config_name=config_name, overrides=list(overrides)))


def with_plain_choices(cfg: DictConfig) -> DictConfig:
    """`cfg` with the closed-set choices, enums in the schema, as their plain string values (and still closed to new keys)."""
    plain = OmegaConf.create(OmegaConf.to_container(cfg, enum_to_str=True))
    OmegaConf.set_struct(plain, True)
    return plain


def build_datasets(cfg: DictConfig) -> DomainDatasets:
    """The source and target datasets named by `cfg.data`."""
    missing = sorted(OmegaConf.missing_keys(cfg.data))
    if missing:
        raise ValueError(f"{', '.join(missing)} must be given, e.g. python -m dann.train {missing[0]}=...")
    return _instantiate(cfg.data)


def choose_run_precision(cfg: DictConfig, datasets: DomainDatasets) -> PrecisionChoice:
    """The dtype policy `cfg` trains in, and why: `trainer.precision`, `auto` chosen for the devices, the
    algorithm and, on a CPU with bfloat16 instructions, by timing `cfg.model` (`dann.precision`).

    Leaves Python's, NumPy's, TensorFlow's and Keras' generators seeded with `cfg.seed`, as a run
    seeds them: the probe's networks draw from them, and must not change what the run draws.
    """
    algorithm = get_class(cfg.algorithm._target_)
    batch = probe_batch(cfg)
    probe = functools.partial(
        probe_bfloat16_speedup, functools.partial(build_model, cfg, datasets), datasets.input_shape, batch, cfg.trainer.jit_compile
    )
    choice = choose_precision(
        cfg.trainer.precision,
        bfloat16_safe=algorithm.BFLOAT16_SAFE,
        algorithm=algorithm.__name__,
        probe=None if cfg.trainer.strategy == "multi_worker" else probe,
        network={
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "input_shape": list(datasets.input_shape),
            "num_classes": datasets.num_classes,
            "batch": batch,
            "jit_compile": cfg.trainer.jit_compile,
        },
        cache_dir=cfg.get("cache_dir"),
    )
    keras.utils.set_random_seed(cfg.seed)
    return choice


def probe_batch(cfg: DictConfig) -> int:
    """Examples per feature pass of one replica, the batch `auto`'s probe times: source and target together, or one domain."""
    batch = (2 if cfg.trainer.feature_pass == "joint" else 1) * cfg.trainer.batch_size
    return batch // (cfg.trainer.cpu_devices if cfg.trainer.strategy == "mirrored" else 1)


def build_model(cfg: DictConfig, datasets: DomainDatasets, precision: str | None = None) -> AdaptationModel:
    """The three networks of `cfg.model`, sized for `datasets`, composed, in the Keras dtype policy `precision`.

    `precision` `None`: the one `choose_run_precision` gives (which may time the network once).
    """
    if precision is None:
        precision = choose_run_precision(cfg, datasets).policy
    with dtype_policy(precision):
        return build_adaptation_model(
            feature_extractor=_instantiate(cfg.model.feature_extractor, name="feature_extractor"),
            label_classifier=_instantiate(cfg.model.label_classifier, num_outputs=datasets.num_classes, name="label_classifier"),
            domain_classifier=_instantiate(cfg.model.domain_classifier, num_outputs=1, name="domain_classifier"),
            input_shape=datasets.input_shape,
            domain_conditioning=get_class(cfg.algorithm._target_).domain_conditioning(**algorithm_hyperparameters(cfg)),
        )


def build_optimizer(cfg: DictConfig, precision: str = "float32") -> keras.optimizers.Optimizer:
    """`cfg.optimizer` with its `lr` as the initial rate of `cfg.schedule.learning_rate`, for a model in `precision`."""
    settings = OmegaConf.to_container(cfg.optimizer, resolve=True)
    initial_rate = settings.pop("lr")
    schedule = _instantiate(cfg.schedule.learning_rate, initial_learning_rate=initial_rate, total_steps=cfg.trainer.steps)
    optimizer = _instantiate(settings, learning_rate=schedule)
    if precision == "mixed_float16":  # float16 gradients underflow without loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_algorithm(cfg: DictConfig, model: AdaptationModel, strategy: tf.distribute.Strategy | None = None) -> Algorithm:
    """The algorithm of `cfg.algorithm` training `model` (built in `strategy`'s scope, if given) as `cfg` describes."""
    with (strategy or tf.distribute.get_strategy()).scope():
        optimizer = build_optimizer(cfg, model.dtype_policy.name)
    return _instantiate(
        cfg.algorithm,
        model=model,
        optimizer=optimizer,
        adaptation_schedule=_instantiate(cfg.schedule.adaptation),
        total_steps=cfg.trainer.steps,
        jit_compile=cfg.trainer.jit_compile,
        feature_pass=cfg.trainer.feature_pass,
        strategy=strategy,
    )


def _instantiate(node: Any, **kwargs) -> Any:
    """`hydra.utils.instantiate`, raising the target's own error (which says what to fix) instead of Hydra's wrapper."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, Exception):
            raise error.__cause__ from None
        raise


def trainer_settings(cfg: DictConfig) -> TrainerSettings:
    """The loop settings of `cfg.trainer`, seeded by `cfg.seed`."""
    names = [setting.name for setting in fields(TrainerSettings) if setting.name != "seed"]
    return TrainerSettings(seed=cfg.seed, **{name: cfg.trainer[name] for name in names})
