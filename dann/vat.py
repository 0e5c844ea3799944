"""Virtual adversarial training (Miyato et al., TPAMI 2019), the smoothness term of VADA and DIRT-T.

The loss is `KL(p(x) || p(x + r_adv))` with `r_adv` the perturbation of L2 norm `radius`
that changes the prediction most, found by one power iteration from a random direction on
the divergence's Hessian, an exact Hessian-vector product (the usual finite difference drowns in rounding).
`r_adv` is a constant of the loss (`tf.stop_gradient`): the network is trained to be
smooth around `x`; it is never trained through the choice of the perturbation.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from dann.losses import kl_divergence

Classifier = Callable[[tf.Tensor], tf.Tensor]


def adversarial_perturbation(
    classify: Classifier, inputs: tf.Tensor, logits: tf.Tensor, radius: float, noise: tf.random.Generator
) -> tf.Tensor:
    """The perturbation `(N, ...)` of L2 norm `radius` per example that most changes `classify`'s prediction.

    One power iteration from a random direction `d` on the Hessian of `KL(p(x) || p(x + r))` at
    `r = 0`, which is `J^T F J` (`J` the Jacobian of the logits in the inputs, `F` the softmax's
    Fisher matrix `diag(p) - p p^T`). `H d` is computed exactly, forward mode for `J d` and
    backward mode for `J^T (F J d)`, not by Miyato et al.'s finite difference at `x + xi d`: a
    step `xi` small enough for a finite difference vanishes when the network computes in
    bfloat16 (8 bits of mantissa), and the direction then came from rounding.

    Args:
        classify: inputs `(N, ...)` to class logits `(N, C)`.
        inputs: the examples `(N, ...)`.
        logits: `classify(inputs)`, the predictions to stay close to.
        radius: the perturbation's L2 norm per example, in input units.
        noise: draws the power iteration's random start; a checkpointed generator makes
            resumed runs draw what uninterrupted ones do.

    Returns:
        A constant tensor (no gradient reaches any variable through it).
    """
    direction = _unit(noise.normal(tf.shape(inputs), dtype=inputs.dtype))
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        with tf.autodiff.ForwardAccumulator(primals=inputs, tangents=direction) as accumulator:
            outputs = classify(inputs)
    logit_change = tf.cast(accumulator.jvp(outputs), tf.float32)  # J d, (N, C)
    fisher_times = probabilities * (logit_change - tf.reduce_sum(probabilities * logit_change, axis=-1, keepdims=True))
    hessian_times = tape.gradient(outputs, inputs, output_gradients=tf.cast(fisher_times, outputs.dtype))
    return tf.stop_gradient(radius * _unit(hessian_times))


def virtual_adversarial_loss(
    classify: Classifier, inputs: tf.Tensor, logits: tf.Tensor, radius: float, noise: tf.random.Generator
) -> tuple[tf.Tensor, tf.Tensor]:
    """`(loss, perturbation)`: mean `KL(p(x) || p(x + r_adv))` in nats, and `r_adv` `(N, ...)`."""
    perturbation = adversarial_perturbation(classify, inputs, logits, radius, noise)
    return kl_divergence(logits, classify(inputs + perturbation)), perturbation


def _unit(vectors: tf.Tensor) -> tf.Tensor:
    """Each example of `vectors` `(N, ...)` scaled to unit L2 norm.

    Scaled by its largest entry first: where the prediction is confident, `F` and so `H d` are
    tiny, below `tf.math.l2_normalize`'s epsilon, which would otherwise shrink them.
    """
    axes = tf.range(1, tf.rank(vectors))
    vectors = vectors / (tf.reduce_max(tf.abs(vectors), axis=axes, keepdims=True) + 1e-30)
    return tf.math.l2_normalize(vectors, axis=axes)
