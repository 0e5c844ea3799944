import keras
import numpy as np
import pytest
import tensorflow as tf

from dann.layers import GradientReversal, GradientScale


def _input_gradient(layer, x, **call_kwargs):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, **call_kwargs)
        loss = tf.reduce_sum(3.0 * y)
    return y, tape.gradient(loss, x)


def test_forward_is_identity():
    x = tf.random.normal((4, 3))
    np.testing.assert_array_equal(GradientReversal()(x).numpy(), x.numpy())


@pytest.mark.parametrize("lambda_", [0.0, 0.5, 1.0, 6.0])
def test_backward_multiplies_gradient_by_minus_lambda(lambda_):
    x = tf.random.normal((4, 3))
    _, grad = _input_gradient(GradientReversal(), x, lambda_=tf.constant(lambda_))
    np.testing.assert_allclose(grad.numpy(), np.full((4, 3), -3.0 * lambda_), atol=1e-6)


def test_default_lambda_from_constructor():
    _, grad = _input_gradient(GradientReversal(lambda_=0.25), tf.ones((2, 2)))
    np.testing.assert_allclose(grad.numpy(), np.full((2, 2), -0.75))


def test_negative_lambda_is_refused():
    with pytest.raises(ValueError, match="lambda_"):
        GradientReversal(lambda_=-1.0)


def test_changing_lambda_does_not_retrace():
    layer = GradientReversal()
    traces = []

    @tf.function
    def grad(x, lambda_):
        traces.append(1)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(layer(x, lambda_=lambda_))
        return tape.gradient(total, x)

    x = tf.ones((2,))
    for value in (0.1, 0.2, 0.3):
        np.testing.assert_allclose(grad(x, tf.constant(value)).numpy(), [-value, -value], rtol=1e-6)
    assert len(traces) == 1


def test_get_config_round_trip():
    layer = GradientReversal(lambda_=0.3, name="grl")
    clone = GradientReversal.from_config(layer.get_config())
    assert clone.lambda_ == 0.3 and clone.name == "grl"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, GradientReversal) and restored.lambda_ == 0.3


def test_in_functional_model_reverses_weight_gradient():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(2, name="features")(inputs)
    outputs = keras.layers.Dense(1, name="head")(GradientReversal(lambda_=1.0)(hidden))
    reversed_model = keras.Model(inputs, outputs)
    plain_model = keras.Model(inputs, reversed_model.get_layer("head")(hidden))
    x = tf.random.normal((5, 3))
    kernel = reversed_model.get_layer("features").kernel

    def kernel_gradient(model):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x))
        return tape.gradient(loss, kernel)

    np.testing.assert_allclose(kernel_gradient(reversed_model), -kernel_gradient(plain_model), rtol=1e-6)


def test_under_mirrored_strategy_on_two_cpus():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    layer = GradientReversal()

    @tf.function
    def replica_grad(x):
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                total = tf.reduce_sum(layer(x, lambda_=tf.constant(2.0)))
            return tape.gradient(total, x)

        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(step, args=(x,)), axis=None)

    # Each of the two replicas contributes -lambda = -2 per element.
    np.testing.assert_allclose(replica_grad(tf.ones((3,))).numpy(), [-4.0, -4.0, -4.0])


def test_under_mixed_bfloat16_policy():
    layer = GradientReversal(dtype="mixed_bfloat16")
    x = tf.ones((2, 3), tf.bfloat16)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(layer(x, lambda_=tf.constant(0.5)))
    grad = tape.gradient(total, x)
    assert grad.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(grad, tf.float32).numpy(), np.full((2, 3), -0.5))


def test_gradient_scale_scales_the_gradient_only():
    layer = GradientScale(0.1)
    x = tf.constant([[1.0, -2.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [[0.1, 0.1]])
    assert GradientScale.from_config(layer.get_config()).scale == 0.1
    with pytest.raises(ValueError, match="scale must be >= 0"):
        GradientScale(-1.0)
