"""DANN's training step: one tape, both losses, every trainable variable updated."""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from dann import losses
from dann.models import DANNModel

Metrics = dict[str, tf.Tensor]
GradientsAndVariables = list[tuple[tf.Tensor | None, tf.Variable]]
FEATURE_PASSES = ("joint", "per_domain")


class DANN:
    """Domain-adversarial training of a `DANNModel` (Ganin et al., JMLR 2016, algorithm 1).

    Each step feeds a labelled source batch and an unlabelled target batch through the
    feature extractor (in one pass by default), computes the label loss on source and the domain
    loss on both domains (through the gradient reversal, scaled by lambda), and
    applies the gradient of `label_loss + domain_loss_weight * domain_loss` to every
    trainable variable of the model.

    Args:
        model: the three networks.
        optimizer: a Keras optimizer; its learning rate may be a schedule of its steps.
        adaptation_schedule: maps training progress `p` in [0, 1] to lambda
            (see `dann.schedules`).
        total_steps: the number of steps in the run, which defines `p = step / total_steps`.
        domain_loss_weight: the weight of the domain loss in the total loss, >= 0.
        target_entropy_weight: the weight of the mean prediction entropy on the target
            batch, >= 0. 0 (the default) is the paper's DANN; a positive weight adds
            entropy minimisation (Grandvalet & Bengio, 2005), which pushes target
            predictions to be confident and decision boundaries away from target data.
        jit_compile: compile the update with XLA (often faster on GPUs, not always on CPUs).
        strategy: the `tf.distribute.Strategy` whose scope `model` and `optimizer` were
            built in; each update runs under `strategy.run`, every replica on its slice
            of the batch, with losses scaled to the global batch (default: the current
            strategy, one device unless inside a scope).
        feature_pass: `"joint"` runs the feature extractor once on the concatenated
            source and target batch; `"per_domain"` runs it once per domain, so batch
            normalisation normalises each domain with its own statistics.

    Example:
        >>> algorithm = DANN(model, keras.optimizers.SGD(0.01), SigmoidRamp(), total_steps=1000)
        >>> metrics = algorithm.update(source_x, source_y, target_x, step=tf.constant(0))
    """

    def __init__(
        self,
        model: DANNModel,
        optimizer: keras.optimizers.Optimizer,
        adaptation_schedule: Callable[[tf.Tensor], tf.Tensor],
        total_steps: int,
        domain_loss_weight: float = 1.0,
        target_entropy_weight: float = 0.0,
        jit_compile: bool = False,
        strategy: tf.distribute.Strategy | None = None,
        feature_pass: str = "joint",
    ):
        if total_steps < 1:
            raise ValueError(f"DANN: total_steps must be >= 1. Received: total_steps={total_steps}")
        for name, weight in (("domain_loss_weight", domain_loss_weight), ("target_entropy_weight", target_entropy_weight)):
            if weight < 0:
                raise ValueError(f"DANN: {name} must be >= 0. Received: {name}={weight}")
        if feature_pass not in FEATURE_PASSES:
            raise ValueError(f"DANN: feature_pass must be one of {FEATURE_PASSES}. Received: feature_pass={feature_pass!r}")
        self.feature_pass = feature_pass
        self.model = model
        self.optimizer = optimizer
        self.adaptation_schedule = adaptation_schedule
        self.total_steps = total_steps
        self.domain_loss_weight = domain_loss_weight
        self.target_entropy_weight = target_entropy_weight
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.optimizer.build(model.trainable_variables)  # slots exist before any trace
        if jit_compile:  # XLA compiles each replica's step; the loops around it stay plain graphs
            self._replica_update = tf.function(self._replica_update, jit_compile=True)
        self.update = tf.function(self._update)
        self.update_steps = tf.function(self._update_steps, reduce_retracing=True)
        self.predict = tf.function(self._predict)

    def adaptation_factor(self, step: tf.Tensor) -> tf.Tensor:
        """Lambda at `step`, a float32 scalar."""
        progress = tf.cast(step, tf.float32) / float(self.total_steps)
        return tf.cast(self.adaptation_schedule(progress), tf.float32)

    def forward(
        self,
        source_x: tf.Tensor,
        source_y: tf.Tensor,
        target_x: tf.Tensor,
        lambda_: tf.Tensor,
        training: bool = True,
    ) -> Metrics:
        """Losses and accuracies of one batch pair; differentiable in the model's variables.

        Args:
            source_x: `(N_s, ...)` source inputs.
            source_y: `(N_s,)` integer source labels.
            target_x: `(N_t, ...)` target inputs (their labels are never used).
            lambda_: float32 scalar, the gradient reversal strength.
            training: run dropout and batch norm in training mode.

        Returns:
            `label_loss`, `domain_loss`, `target_entropy` (nats), `label_accuracy`
            (source batch) and `domain_accuracy` (both batches), float32 scalars.
        """
        num_source = tf.shape(source_x)[0]
        if self.feature_pass == "joint":
            features = self.model.feature_extractor(tf.concat([source_x, target_x], axis=0), training=training)
        else:
            features = tf.concat(
                [self.model.feature_extractor(x, training=training) for x in (source_x, target_x)], axis=0
            )
        class_logits = self.model.label_classifier(features, training=training)
        domain_logits = self.model.domain_logits(features, lambda_, training=training)
        return {
            "label_loss": losses.label_loss(source_y, class_logits[:num_source]),
            "domain_loss": losses.domain_loss(domain_logits, num_source),
            "target_entropy": losses.prediction_entropy(class_logits[num_source:]),
            "label_accuracy": _accuracy(tf.argmax(class_logits[:num_source], axis=-1), source_y),
            "domain_accuracy": _accuracy(
                tf.reshape(domain_logits, [-1]) > 0,
                losses.domain_labels(num_source, tf.shape(target_x)[0]) > 0.5,
            ),
        }

    def total_loss(self, terms: Metrics) -> tf.Tensor:
        """`label_loss + domain_loss_weight * domain_loss + target_entropy_weight * target_entropy`."""
        loss = terms["label_loss"] + self.domain_loss_weight * terms["domain_loss"]
        if self.target_entropy_weight:
            loss += self.target_entropy_weight * terms["target_entropy"]
        return loss

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
        return {**terms, "loss": loss, "lambda": lambda_}, list(zip(gradients, variables))

    def _replica_update(self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, step: tf.Tensor) -> Metrics:
        """One replica's part of an update: its slice of the batch pair, its gradients applied (summed over replicas)."""
        source_x, source_y, target_x = (_replica_slice(batch) for batch in (source_x, source_y, target_x))
        metrics, gradients_and_variables = self.compute_gradients(source_x, source_y, target_x, step)
        learning_rate = self.optimizer.learning_rate  # the rate this step is taken with
        self.optimizer.apply_gradients(gradients_and_variables)
        return {**metrics, "learning_rate": tf.cast(learning_rate, tf.float32)}

    def _update(self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, step: tf.Tensor) -> Metrics:
        """One update on a batch pair (`update`, compiled): the metrics of `compute_gradients` and the learning rate.

        The metrics are averaged over replicas, whose slices are of equal size: the global batch's.
        """
        per_replica = self.strategy.run(self._replica_update, args=(source_x, source_y, target_x, step))
        return {key: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for key, value in per_replica.items()}

    def _update_steps(self, source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, first_step: tf.Tensor) -> Metrics:
        """`k` updates in one compiled call (`update_steps`), which saves `k - 1` Python round trips.

        Args:
            source_x, source_y, target_x: `k` stacked batches, `(k, B, ...)`.
            first_step: the step number of the first update; the others follow.

        Returns:
            The metrics averaged over the `k` updates.
        """
        num_steps = tf.shape(source_x)[0]
        totals = self._update(source_x[0], source_y[0], target_x[0], first_step)
        for i in tf.range(1, num_steps):
            metrics = self._update(source_x[i], source_y[i], target_x[i], first_step + tf.cast(i, first_step.dtype))
            totals = {key: totals[key] + metrics[key] for key in totals}
        return {key: total / tf.cast(num_steps, tf.float32) for key, total in totals.items()}

    def _predict(self, inputs: tf.Tensor) -> tf.Tensor:
        return predicted_classes(self.model, inputs)


def predicted_classes(model: keras.Model, inputs: tf.Tensor) -> tf.Tensor:
    """`(B,)` int64 class indices that `model` predicts for `inputs` `(B, ...)`."""
    return tf.argmax(model(inputs, training=False), axis=-1)


def _accuracy(predicted: tf.Tensor, expected: tf.Tensor) -> tf.Tensor:
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
