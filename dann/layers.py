"""The gradient reversal layer (Ganin et al., JMLR 2016, section 3.2), gradient scaling, and CDAN's multilinear map."""

from __future__ import annotations

import keras
import tensorflow as tf


@tf.custom_gradient
def scale_gradient(inputs: tf.Tensor, scale: tf.Tensor):
    """Identity forward; multiplies the incoming gradient by `scale` backward.

    `scale` is a scalar tensor (not a Python float) so that a compiled step can change it
    every step without retracing. It receives no gradient.
    """

    def grad(upstream):
        return tf.cast(scale, upstream.dtype) * upstream, None

    return tf.identity(inputs), grad


def reverse_gradient(inputs: tf.Tensor, lambda_: tf.Tensor) -> tf.Tensor:
    """Identity forward; multiplies the incoming gradient by `-lambda_` backward (a scalar tensor, see `scale_gradient`)."""
    return scale_gradient(inputs, -lambda_)


@keras.saving.register_keras_serializable(package="dann")
class GradientReversal(keras.layers.Layer):
    """Identity in the forward pass; scales the gradient by `-lambda_` in the backward pass.

    Placed between the feature extractor and the domain classifier, it makes the
    domain classifier minimise the domain loss while the feature extractor, through
    the same loss, maximises it: features become domain-invariant.

    Args:
        lambda_: default reversal strength, a non-negative float, used when `call`
            is given none. Training loops pass the scheduled value instead.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a tensor of any shape.
        lambda_: optional scalar tensor overriding the default strength. Passing a
            tensor (not a Python number) keeps a `tf.function` from retracing when
            it changes.

    Input shape:
        Any.

    Output shape:
        Same as the input.

    Example:
        >>> reversal = GradientReversal()
        >>> x = tf.constant([[1.0, 2.0]])
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = reversal(x, lambda_=tf.constant(0.5))
        >>> tape.gradient(y, x).numpy()
        array([[-0.5, -0.5]], dtype=float32)
    """

    def __init__(self, lambda_: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if lambda_ < 0:
            raise ValueError(
                f"GradientReversal: `lambda_` must be >= 0 (it is the strength of the "
                f"reversal; the sign flip is built in). Received: lambda_={lambda_}"
            )
        self.lambda_ = float(lambda_)
        self.supports_masking = True

    def call(self, inputs, lambda_=None):
        if lambda_ is None:
            lambda_ = self.lambda_
        # Under mixed precision Keras casts `lambda_` to the compute dtype; keep it exact.
        return reverse_gradient(inputs, tf.cast(lambda_, tf.float32))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "lambda_": self.lambda_}


@keras.saving.register_keras_serializable(package="dann")
class GradientScale(keras.layers.Layer):
    """Identity in the forward pass; multiplies the gradient by `scale` in the backward pass.

    Behind a pretrained backbone, `scale=0.1` trains it at a tenth of the learning rate of
    the layers after it, the usual fine-tuning recipe, exactly so for SGD (whose step is
    linear in the gradient; adaptive optimisers such as Adam largely undo the scaling).

    Args:
        scale: the gradient's multiplier, >= 0.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape:
        Any.

    Output shape:
        Same as the input.
    """

    def __init__(self, scale: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if scale < 0:
            raise ValueError(f"GradientScale: scale must be >= 0 (GradientReversal reverses). Received: scale={scale}")
        self.scale = float(scale)

    def call(self, inputs):
        return scale_gradient(inputs, tf.constant(self.scale, tf.float32))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="dann")
class MultilinearMap(keras.layers.Layer):
    """CDAN's conditioning: the multilinear map of features and class probabilities (Long et al., NeurIPS 2018).

    `T(f, g) = f (x) g`, the flattened outer product, when `F * C <= max_full_dim`;
    otherwise the randomised multilinear map `T(f, g) = (f R_f) * (g R_g) / sqrt(d)` with
    fixed Gaussian matrices `R_f (F, d)`, `R_g (C, d)` (section 3.2), whose inner products
    approximate the full map's.

    Args:
        max_full_dim: the largest `F * C` computed exactly (paper: 4096).
        randomized_dim: `d`, the width of the randomised map (paper: 1024).
        seed: seed of `R_f` and `R_g`; they are saved with the model's weights.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[features (batch, F), probabilities (batch, C)]`.

    Output shape:
        `(batch, F * C)` or `(batch, randomized_dim)`.
    """

    def __init__(self, max_full_dim: int = 4096, randomized_dim: int = 1024, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("max_full_dim", max_full_dim), ("randomized_dim", randomized_dim)):
            if value < 1:
                raise ValueError(f"MultilinearMap: {name} must be >= 1. Received: {name}={value}")
        self.max_full_dim = int(max_full_dim)
        self.randomized_dim = int(randomized_dim)
        self.seed = int(seed)
        self.randomized = None

    def build(self, input_shape):
        (_, num_features), (_, num_classes) = input_shape
        self.randomized = num_features * num_classes > self.max_full_dim
        if self.randomized:
            # Two seeds: one seed would draw the same stream for both, correlating them and biasing the map.
            self.feature_projection = self.add_weight(
                (num_features, self.randomized_dim),
                keras.initializers.RandomNormal(stddev=1.0, seed=self.seed),
                trainable=False,
                name="feature_projection",
            )
            self.class_projection = self.add_weight(
                (num_classes, self.randomized_dim),
                keras.initializers.RandomNormal(stddev=1.0, seed=self.seed + 1),
                trainable=False,
                name="class_projection",
            )

    def call(self, inputs):
        features, probabilities = inputs
        if self.randomized:
            projected = tf.matmul(features, self.feature_projection) * tf.matmul(probabilities, self.class_projection)
            return projected / tf.cast(tf.sqrt(float(self.randomized_dim)), projected.dtype)
        outer = features[:, :, None] * probabilities[:, None, :]
        return tf.reshape(outer, [-1, features.shape[-1] * probabilities.shape[-1]])

    def compute_output_shape(self, input_shape):
        (batch, num_features), (_, num_classes) = input_shape
        width = self.randomized_dim if num_features * num_classes > self.max_full_dim else num_features * num_classes
        return (batch, width)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_full_dim": self.max_full_dim, "randomized_dim": self.randomized_dim, "seed": self.seed}
