"""`model.fit` for Keras users: an `Algorithm`'s update as a Keras model's `train_step`.

    algorithm = dann.DANN(model, optimizer, schedules.SigmoidRamp(), total_steps=10_000)
    trainer = dann.DomainAdversarialModel(algorithm)
    trainer.compile()
    trainer.fit(dann.data.training_batches(datasets, 64, seed=0), steps_per_epoch=1000, epochs=10,
                callbacks=[keras.callbacks.ModelCheckpoint(...), keras.callbacks.EarlyStopping(...)])

Each step is the algorithm's own update (the same losses, lambda schedule, gradients over
every trainable variable and optimizer as `dann.fit`); lambda follows its schedule from the
optimizer's iteration count, and the gradient contract is verified on a batch of the data's shapes
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
    `dann.data.training_batches` yields them; the logs hold the update's metrics, averaged
    over replicas. Build `algorithm` under a `tf.distribute` strategy's scope to train on
    several devices: each replica gets the slice of each batch that `dann.fit` gives it.
    """

    def __init__(self, algorithm: Algorithm, **kwargs):
        with algorithm.strategy.scope():  # Keras trains under the strategy current at construction
            super().__init__(**kwargs)
        self.algorithm = algorithm
        self.network = algorithm.model  # tracked: callbacks save and restore its weights
        self.built = True  # the network is

    def compile(self, steps_per_execution: int = 1, **kwargs) -> None:
        """Keras' `compile`, with the algorithm's optimizer (the losses are the algorithm's)."""
        replicas = self.algorithm.strategy.num_replicas_in_sync
        if steps_per_execution > 1 and replicas > 1:
            # Keras 3's multi-step loop fails under MirroredStrategy ("You must feed a value for
            # placeholder tensor"), even for a single Dense layer: keras-team/keras#19246.
            raise ValueError(
                f"steps_per_execution={steps_per_execution} with {replicas} replicas fails in Keras 3 (keras-team/keras issue "
                "19246). Use steps_per_execution=1, or dann.fit / python -m dann.train, whose trainer.steps_per_call works on "
                "several replicas."
            )
        super().compile(optimizer=self.algorithm.optimizer, steps_per_execution=steps_per_execution, **kwargs)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.algorithm.classifier()(inputs, training=training)

    def fit(self, x: tf.data.Dataset, **kwargs) -> keras.callbacks.History:
        """Keras' `fit` on batch pairs, after `verify_gradients` on a batch of their shapes (no update is applied).

        The batch is random (seeded, stateless): reading one from `x` would start another
        pass over it, and a shuffled dataset reshuffles for each pass, so training would
        see other batches than `dann.fit` does.
        """
        if int(self.algorithm.optimizer.iterations.numpy()) == 0:
            verify_gradients(
                self.algorithm, *_random_batch(x.element_spec, self.network.label_classifier.output_shape[-1]), tf.constant(0, tf.int64)
            )
        return super().fit(self._replica_slices(x), shuffle=False, **kwargs)  # a dataset shuffles itself

    def _maybe_symbolic_build(self, iterator=None, data_batch=None) -> None:
        """Nothing to build: the network and the algorithm's optimizer are built.

        Overrides Keras' (3.x), which under a strategy takes the first batch off the training
        iterator to build the model, and that batch is then never trained on.
        """

    def _replica_slices(self, batches: tf.data.Dataset) -> tf.data.Dataset | tf.distribute.DistributedDataset:
        """`batches` cut into equal slices along the batch axis, replica `i` fed slice `i`, as `dann.fit` cuts them.

        Keras would distribute `batches` itself, with its own split; feeding the loop's
        slices makes `fit` train exactly like `dann.fit` on any number of replicas.
        """
        strategy = self.algorithm.strategy
        replicas = strategy.num_replicas_in_sync
        if replicas == 1:
            return batches
        batch_size = tf.nest.flatten(batches.element_spec)[0].shape[0]
        if batch_size is not None and batch_size % replicas:
            raise ValueError(f"fit: batches of {batch_size} do not split evenly over {replicas} replicas: choose a multiple of {replicas}.")

        def worker_slices(context: tf.distribute.InputContext) -> tf.data.Dataset:
            local = replicas // context.num_input_pipelines  # this worker's replicas, numbered from `first`
            first = context.input_pipeline_id * local

            def cut(*pair):  # a batch pair -> its `local` slices, stacked in replica order
                return tf.nest.map_structure(lambda batch: tf.stack(tf.split(batch, replicas))[first : first + local], pair)

            return batches.map(cut).unbatch()  # fed to this worker's replicas in turn

        return strategy.distribute_datasets_from_function(worker_slices)

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
