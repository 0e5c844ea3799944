"""What every algorithm shares: the compiled update, strategies, lambda, and the gradient contract.

An algorithm (one class, in the style of DomainBed's `algorithms.py`) says three things:
`forward`, its loss terms on one batch pair; `total_loss`, how they are weighted; and
`gradient_paths`, which component of the model each loss must reach (checked before the
first update, `dann.gradient_checks`). Everything else (one tape over every trainable
variable, `k` updates per compiled call, `tf.distribute`, mixed precision) is here, once.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import keras
import tensorflow as tf

from dann.data import DomainDatasets
from dann.models import COMPONENTS, AdaptationModel

Metrics = dict[str, tf.Tensor]
GradientsAndVariables = list[tuple[tf.Tensor | None, tf.Variable]]
FEATURE_PASSES = ("joint", "per_domain")
# The constructor arguments every algorithm passes on to `Algorithm`: how it trains, not what it optimises.
MACHINERY = ("jit_compile", "strategy", "feature_pass")
# The constructor arguments that come from other parts of a run (the model, its optimizer, the schedule, the steps).
SUPPLIED = ("model", "optimizer", "adaptation_schedule", "total_steps")
FEATURE_EXTRACTOR, LABEL_CLASSIFIER, DOMAIN_CLASSIFIER = "feature_extractor", "label_classifier", "domain_classifier"
CLASSIFIER = frozenset({FEATURE_EXTRACTOR, LABEL_CLASSIFIER})  # what a loss on class predictions reaches
ADVERSARY = frozenset({FEATURE_EXTRACTOR, DOMAIN_CLASSIFIER})  # what the domain loss reaches (reversed, at the features)


@dataclass(frozen=True)
class Rule:
    """A range a hyperparameter must lie in, with the words that say so."""

    words: str
    accepts: Callable[[float], bool]


NON_NEGATIVE = Rule(">= 0", lambda value: value >= 0)
POSITIVE = Rule("> 0", lambda value: value > 0)
FRACTION = Rule("in [0, 1)", lambda value: 0 <= value < 1)
POSITIVE_INTEGER = Rule("an integer >= 1", lambda value: int(value) == value and value >= 1)
NON_NEGATIVE_INTEGER = Rule("an integer >= 0", lambda value: int(value) == value and value >= 0)


class Algorithm:
    """Trains an `AdaptationModel`: one tape over `total_loss(forward(...))`, applied to every trainable variable.

    Subclasses define `forward`, `total_loss` and `gradient_paths` (and may override the
    hooks `before_update`, `training_datasets`, `checkpoint_state`, `classifier`, `finish`, and
    `adaptation_steps` if the domain classifier stops training before the end); their constructors
    take their hyperparameters by keyword and pass the rest, `**machinery`, here. A subclass that
    extends another algorithm's hyperparameters takes them as `**<parent>_settings` instead and
    passes them to the parent's constructor (`DIRTT` takes VADA's so); `settings()` lists them all.

    Args:
        model: the three networks.
        optimizer: a Keras optimizer; its learning rate may be a schedule of its steps.
        adaptation_schedule: maps training progress `p` in [0, 1] to lambda, the gradient
            reversal strength (see `dann.schedules`); `None`: lambda is 0 throughout.
        total_steps: the number of steps in the run, which defines `p = step / total_steps`.
        jit_compile: compile the update with XLA (often faster on GPUs, not always on CPUs).
        strategy: the `tf.distribute.Strategy` whose scope `model` and `optimizer` were
            built in; each update runs under `strategy.run`, every replica on its slice
            of the batch, with losses scaled to the global batch (default: the current
            strategy, one device unless inside a scope).
        feature_pass: `"joint"` runs the feature extractor once on the concatenated
            source and target batch; `"per_domain"` runs it once per domain, so batch
            normalisation normalises each domain with its own statistics.
    """

    # Hyperparameters and the ranges they must lie in, checked at construction and at composition.
    HYPERPARAMETERS: ClassVar[Mapping[str, Rule]] = {}
    # The loss whose gradient must reach the features reversed (scaled by -lambda); None: no reversal.
    REVERSED_LOSS: ClassVar[str | None] = None
    # Keys of `forward`'s output that are tensors every loss treats as constants (no variable may get a gradient through them).
    CONSTANTS: ClassVar[tuple[str, ...]] = ()
    # Whether `trainer.precision=auto` may train it in bfloat16 (measured on MNIST-M against float32).
    BFLOAT16_SAFE: ClassVar[bool] = True

    def __init__(
        self,
        model: AdaptationModel,
        optimizer: keras.optimizers.Optimizer,
        adaptation_schedule: Callable[[tf.Tensor], tf.Tensor] | None,
        total_steps: int,
        jit_compile: bool = False,
        strategy: tf.distribute.Strategy | None = None,
        feature_pass: str = "joint",
    ):
        name = type(self).__name__
        if total_steps < 1:
            raise ValueError(f"{name}: total_steps must be >= 1. Received: total_steps={total_steps}")
        if feature_pass not in FEATURE_PASSES:
            raise ValueError(f"{name}: feature_pass must be one of {FEATURE_PASSES}. Received: feature_pass={feature_pass!r}")
        self.feature_pass = feature_pass
        self.model = model
        self.optimizer = optimizer
        self.adaptation_schedule = adaptation_schedule
        self.total_steps = total_steps
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.optimizer.build(model.trainable_variables)  # slots exist before any trace
        if jit_compile:  # XLA compiles each replica's step; the loops around it stay plain graphs
            self._replica_update = tf.function(self._replica_update, jit_compile=True)

    @classmethod
    def settings(cls) -> dict[str, tuple[Any, Any]]:
        """`{name: (type, default)}` of every hyperparameter the constructor accepts (what the config may set)."""
        if cls is Algorithm:
            return {}
        parameters = inspect.signature(cls.__init__).parameters.values()
        hints = typing.get_type_hints(cls.__init__)
        own = {
            parameter.name: (hints[parameter.name], parameter.default)
            for parameter in parameters
            if parameter.name not in ("self", *SUPPLIED) and parameter.kind is not inspect.Parameter.VAR_KEYWORD
        }
        extends = any(p.kind is inspect.Parameter.VAR_KEYWORD and p.name != "machinery" for p in parameters)
        return {**(cls.__base__.settings() if extends else {}), **own}

    @classmethod
    def adaptation_steps(cls, total_steps: int, **hyperparameters: Any) -> int:
        """How many steps, from the first, train the domain classifier and, through the reversal, the features
        against it: all of them, or none without a reversal. `hyperparameters`: as the constructor takes them."""
        return total_steps if cls.REVERSED_LOSS is not None else 0

    def run_adaptation_steps(self) -> int:
        """`adaptation_steps` of this instance's run (an algorithm whose count depends on its hyperparameters overrides it)."""
        return self.adaptation_steps(self.total_steps)

    @classmethod
    def only_machinery(cls, machinery: dict[str, Any]) -> dict[str, Any]:
        """`machinery`, or `TypeError` naming an argument outside `MACHINERY` (a parent's hyperparameter this class does not use)."""
        unexpected = sorted(set(machinery) - set(MACHINERY))
        if unexpected:
            raise TypeError(f"{cls.__name__}.__init__() got an unexpected keyword argument {unexpected[0]!r}")
        return machinery

    @classmethod
    def check_hyperparameters(cls, **values: float) -> None:
        """Raises `ValueError` naming the first value outside its range (`HYPERPARAMETERS`)."""
        for name, value in values.items():
            rule = cls.HYPERPARAMETERS.get(name)
            if rule is not None and value is not None and not rule.accepts(value):
                raise ValueError(f"algorithm.{name} must be {rule.words} ({cls.__name__}). Received: {name}={value}")

    # What a subclass defines.

    def forward(
        self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, lambda_: tf.Tensor | None, training: bool = True
    ) -> Metrics:
        """Loss terms and metrics of one batch pair; differentiable in the model's variables.

        Args:
            source_x: `(N_s, ...)` source inputs.
            source_y: `(N_s,)` integer source labels.
            target_x: `(N_t, ...)` target inputs (their labels are never used).
            lambda_: float32 scalar, the gradient reversal strength; `None` skips the
                reversal (the gradient checks measure the domain classifier's own objective so).
            training: run dropout and batch norm in training mode.

        Returns:
            Float32 scalars by name (the losses of `gradient_paths`, in nats, and metrics),
            and the tensors named in `CONSTANTS`.
        """
        raise NotImplementedError

    def total_loss(self, terms: Metrics) -> tf.Tensor:
        """The weighted sum of `forward`'s losses that the update minimises."""
        raise NotImplementedError

    def gradient_paths(self) -> dict[str, frozenset[str]]:
        """`{loss: components}`: the components of the model each loss must reach, and no others."""
        raise NotImplementedError

    # Hooks.

    @staticmethod
    def domain_conditioning(**hyperparameters) -> keras.layers.Layer | None:
        """The layer the model needs between its features and its domain classifier (CDAN's map); `None`: none."""
        return None

    def before_update(self, step: tf.Tensor) -> None:
        """Runs in the compiled update before the gradients, in cross-replica context (DIRT-T's teacher)."""
        del step  # nothing to do by default (a docstring alone is a body AutoGraph cannot convert)

    def training_datasets(self, datasets: DomainDatasets) -> DomainDatasets:
        """The datasets the algorithm trains on (train-on-target swaps the domains' roles)."""
        return datasets

    def checkpoint_state(self) -> dict[str, tf.Module]:
        """Trackable state beyond the model and optimizer that a checkpoint must hold to resume exactly."""
        return {}

    def classifier(self) -> keras.Model:
        """The network evaluated during training and deployed after it (inputs to class logits): the model itself by default."""
        return self.model

    def finish(self) -> None:
        """Runs after the last update, before the final evaluation: puts the network to deploy into `model`."""

    # The shared machinery.

    def adaptation_factor(self, step: tf.Tensor) -> tf.Tensor:
        """Lambda at `step`, a float32 scalar."""
        if self.adaptation_schedule is None:
            return tf.constant(0.0)
        progress = tf.cast(step, tf.float32) / float(self.total_steps)
        return tf.cast(self.adaptation_schedule(progress), tf.float32)

    def features(self, source_x: tf.Tensor, target_x: tf.Tensor, training: bool) -> tf.Tensor:
        """Features `(N_s + N_t, F)` of both batches, source first, in one pass or one per domain (`feature_pass`)."""
        if self.feature_pass == "joint":
            return self.model.feature_extractor(tf.concat([source_x, target_x], axis=0), training=training)
        return tf.concat([self.model.feature_extractor(x, training=training) for x in (source_x, target_x)], axis=0)

    def classify(self, source_x: tf.Tensor, target_x: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """Features `(N_s + N_t, F)` and class logits `(N_s + N_t, C)` of both batches, source first."""
        features = self.features(source_x, target_x, training)
        return features, self.model.label_classifier(features, training=training)

    def compute_gradients(
        self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, step: tf.Tensor
    ) -> tuple[Metrics, GradientsAndVariables]:
        """One forward and backward pass: the metrics, and a gradient for every trainable variable."""
        lambda_ = self.adaptation_factor(step)
        with tf.GradientTape() as tape:
            terms = self.forward(source_x, source_y, target_x, lambda_, training=True)
            loss = self.total_loss(terms)
            # Replicas' gradients are summed, so each contributes its share of the global mean.
            scaled_loss = self.optimizer.scale_loss(loss / _replicas_in_sync())  # scale: only a LossScaleOptimizer
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        gradients_and_variables = list(zip(gradients, variables))
        metrics = {key: value for key, value in terms.items() if key not in self.CONSTANTS}
        loss_scale = self.optimizer.scale_loss(1.0 / _replicas_in_sync())  # what the gradients were multiplied by
        norms = self._gradient_norms(gradients_and_variables, loss_scale)
        return {**metrics, "loss": loss, "lambda": lambda_, **norms}, gradients_and_variables

    def _gradient_norms(self, gradients_and_variables: GradientsAndVariables, loss_scale: tf.Tensor | float) -> Metrics:
        """`<component>_gradient_norm`: the L2 norm of the total loss's gradient over each component's variables.

        Logged with the losses, so a path whose gradient explodes or vanishes shows in the
        training curves; `loss_scale` is divided out (mixed float16, replicas). With several
        replicas, each measures the gradient of its own slice of the batch (no extra all-reduce
        for a figure), so the logged mean is a little larger than the whole batch's norm.
        """
        gradients = {id(variable): gradient for gradient, variable in gradients_and_variables if gradient is not None}
        norms = {}
        for component in COMPONENTS:
            found = [gradients[id(v)] for v in getattr(self.model, component).trainable_variables if id(v) in gradients]
            if found:
                norms[f"{component}_gradient_norm"] = tf.cast(tf.linalg.global_norm(found), tf.float32) / tf.cast(loss_scale, tf.float32)
        return norms

    def _replica_update(self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, step: tf.Tensor) -> Metrics:
        """One replica's part of an update: its slice of the batch pair, its gradients applied (summed over replicas)."""
        source_x, source_y, target_x = (_replica_slice(batch) for batch in (source_x, source_y, target_x))
        return self.apply_update(source_x, source_y, target_x, step)

    def apply_update(self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, step: tf.Tensor) -> Metrics:
        """Computes the gradients of a batch pair and applies them to every trainable variable (in replica context).

        Returns:
            The metrics of `compute_gradients` and the `learning_rate` the step took.
        """
        metrics, gradients_and_variables = self.compute_gradients(source_x, source_y, target_x, step)
        learning_rate = self.optimizer.learning_rate  # the rate this step is taken with
        self.optimizer.apply_gradients(gradients_and_variables)
        return {**metrics, "learning_rate": tf.cast(learning_rate, tf.float32)}

    @tf.function
    def update(self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, step: tf.Tensor) -> Metrics:
        """One compiled update on a batch pair `(B, ...)`, `(B,)`, `(B, ...)` at `step` (an int64 scalar tensor).

        Returns:
            The float32 metrics of `compute_gradients` and the `learning_rate` the step took,
            averaged over replicas, whose slices are of equal size: the global batch's.
        """
        return self._update(source_x, source_y, target_x, step)

    @tf.function(reduce_retracing=True)
    def update_steps(self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, first_step: tf.Tensor) -> Metrics:
        """`k` updates in one compiled call, which saves `k - 1` Python round trips.

        Args:
            source_x, source_y, target_x: `k` stacked batches, `(k, B, ...)`.
            first_step: the step number of the first update, an int64 scalar tensor; the others follow.

        Returns:
            The metrics of `update`, averaged over the `k` updates.
        """
        num_steps = tf.shape(source_x)[0]
        # The metrics are summed as one vector, which starts empty: the update is traced once, inside the
        # loop (peeling the first update off to give the sums their structure would trace it twice).
        names, totals = [], tf.zeros([0])
        for i in tf.range(num_steps):
            tf.autograph.experimental.set_loop_options(shape_invariants=[(totals, tf.TensorShape([None]))])
            metrics = self._update(source_x[i], source_y[i], target_x[i], first_step + tf.cast(i, first_step.dtype))
            names[:] = sorted(metrics)
            values = tf.stack([tf.cast(metrics[name], tf.float32) for name in names])
            totals = tf.cond(i > 0, lambda: totals + values, lambda: values)
        return dict(zip(names, tf.unstack(totals / tf.cast(num_steps, tf.float32), num=len(names))))

    @tf.function
    def predict(self, inputs: tf.Tensor) -> tf.Tensor:
        """`(B,)` int64 classes that `classifier()` predicts for inputs `(B, ...)`, compiled."""
        return predicted_classes(self.classifier(), inputs)

    def _update(self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, step: tf.Tensor) -> Metrics:
        self.before_update(step)
        per_replica = self.strategy.run(self._replica_update, args=(source_x, source_y, target_x, step))
        return {key: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for key, value in per_replica.items()}


def predicted_classes(model: keras.Model, inputs: tf.Tensor) -> tf.Tensor:
    """`(B,)` int64 class indices that `model` predicts for `inputs` `(B, ...)`."""
    return tf.argmax(model(inputs, training=False), axis=-1)


def accuracy(predicted: tf.Tensor, expected: tf.Tensor) -> tf.Tensor:
    """The share of `predicted` `(N,)` equal to `expected` `(N,)`, a float32 scalar."""
    return tf.reduce_mean(tf.cast(tf.equal(tf.cast(predicted, tf.int64), tf.cast(expected, tf.int64)), tf.float32))


def _replicas_in_sync() -> int:
    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else tf.distribute.get_strategy().num_replicas_in_sync


def _replica_slice(batch: tf.Tensor) -> tf.Tensor:
    """This replica's equal share of `batch` `(B, ...)` along the batch axis (all of it on one device)."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    if replicas == 1:
        return batch
    size = tf.shape(batch)[0] // replicas
    return batch[context.replica_id_in_sync_group * size : (context.replica_id_in_sync_group + 1) * size]
