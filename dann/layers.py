"""The gradient reversal layer (Ganin et al., JMLR 2016, section 3.2)."""

from __future__ import annotations

import keras
import tensorflow as tf


@tf.custom_gradient
def reverse_gradient(inputs: tf.Tensor, lambda_: tf.Tensor):
    """Identity forward; multiplies the incoming gradient by `-lambda_` backward.

    `lambda_` is a scalar tensor (not a Python float) so that a compiled step can
    change it every step without retracing. It receives no gradient.
    """

    def grad(upstream):
        return -tf.cast(lambda_, upstream.dtype) * upstream, None

    return tf.identity(inputs), grad


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
