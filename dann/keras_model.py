"""`model.fit` for Keras users: an `Algorithm`'s update as a Keras model's `train_step`.

    algorithm = dann.DANN(model, optimizer, schedules.SigmoidRamp(), total_steps=10_000)
    trainer = dann.DomainAdversarialModel(algorithm)
    trainer.compile()
    trainer.fit(dann.data.training_batches(datasets, 64, seed=0), steps_per_epoch=1000, epochs=10,
                callbacks=[keras.callbacks.ModelCheckpoint(...), keras.callbacks.EarlyStopping(...)])

Each step is the algorithm's own update (the same losses, lambda schedule, gradients over
every trainable variable and optimizer as `dann.fit`); lambda follows its schedule from the
optimizer's iteration count, and the gradient contract is verified on the first batch
before the first step. Use it for Keras' callbacks; `dann.fit` and `python -m dann.train`
keep checkpoints that resume at the exact position in the data, which Keras'
`BackupAndRestore` does not.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from dann.algorithms import Algorithm
from dann.gradient_checks import verify_gradients


class DomainAdversarialModel(keras.Model):
    """A Keras model that trains `algorithm` in `fit` and predicts with its classifier.

    Args:
        algorithm: what to train; its model and optimizer are this model's.

    Call: inputs `(B, ...)` -> class logits `(B, num_classes)` of `algorithm.classifier()`.
    `fit` takes batches `((source_x (B, ...), source_y (B,)), target_x (B, ...))`, as
    `dann.data.training_batches` yields them; the logs hold the update's metrics.
    """

    def __init__(self, algorithm: Algorithm, **kwargs):
        if algorithm.strategy.num_replicas_in_sync > 1:
            raise ValueError(
                "DomainAdversarialModel trains on one device so far: with several replicas, use dann.fit or "
                "python -m dann.train (trainer.strategy=mirrored)."
            )
        super().__init__(**kwargs)
        self.algorithm = algorithm
        self.network = algorithm.model  # tracked: callbacks save and restore its weights
        self.built = True  # the network is

    def compile(self, **kwargs) -> None:
        """Keras' `compile`, with the algorithm's optimizer (the losses are the algorithm's)."""
        super().compile(optimizer=self.algorithm.optimizer, **kwargs)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.algorithm.classifier()(inputs, training=training)

    def fit(self, x: tf.data.Dataset, **kwargs) -> keras.callbacks.History:
        """Keras' `fit` on batch pairs, after `verify_gradients` on a batch of their shapes (no update is applied).

        The batch is random (seeded, stateless): reading one from `x` would start another
        pass over it, and a shuffled dataset reshuffles for each pass, so training would
        see other batches than `dann.fit` does.
        """
        if int(self.algorithm.optimizer.iterations) == 0:
            verify_gradients(
                self.algorithm, *_random_batch(x.element_spec, self.network.label_classifier.output_shape[-1]), tf.constant(0, tf.int64)
            )
        return super().fit(x, shuffle=False, **kwargs)  # a dataset shuffles itself

    def train_step(self, data) -> dict[str, tf.Tensor]:
        (source_x, source_y), target_x = data
        step = tf.cast(self.algorithm.optimizer.iterations, tf.int64)
        # Keras runs this step in replica context; the algorithm's hook wants the cross-replica one.
        tf.distribute.get_replica_context().merge_call(lambda _: self.algorithm.before_update(step))
        return self.algorithm.apply_update(source_x, source_y, target_x, step)


def _random_batch(element_spec, num_classes: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`source_x, source_y, target_x` of the shapes of `((source_x, source_y), target_x)` batches, random but seeded."""
    (source_spec, label_spec), target_spec = element_spec
    if not (source_spec.shape.is_fully_defined() and target_spec.shape.is_fully_defined()):
        raise ValueError(f"fit needs batches of a fixed shape (batch(..., drop_remainder=True)). Received: {element_spec}")
    seed = tf.constant([0, 0], tf.int64)
    return (
        tf.random.stateless_normal(source_spec.shape, seed, dtype=source_spec.dtype),
        tf.random.stateless_uniform(label_spec.shape, seed, maxval=num_classes, dtype=label_spec.dtype),
        tf.random.stateless_normal(target_spec.shape, seed + 1, dtype=target_spec.dtype),
    )
