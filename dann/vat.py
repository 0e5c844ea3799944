"""Virtual adversarial training (Miyato et al., TPAMI 2019), the smoothness term of VADA and DIRT-T.

The loss is `KL(p(x) || p(x + r_adv))` with `r_adv` the perturbation of L2 norm `radius`
that changes the prediction most, found by one power iteration from a random direction.
`r_adv` is a constant of the loss (`tf.stop_gradient`): the network is trained to be
smooth around `x`; it is never trained through the choice of the perturbation.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from dann.losses import kl_divergence

Classifier = Callable[[tf.Tensor], tf.Tensor]


def adversarial_perturbation(
    classify: Classifier, inputs: tf.Tensor, logits: tf.Tensor, radius: float, noise: tf.random.Generator, xi: float = 1e-6
) -> tf.Tensor:
    """The perturbation `(N, ...)` of L2 norm `radius` per example that most changes `classify`'s prediction.

    Args:
        classify: inputs `(N, ...)` to class logits `(N, C)`.
        inputs: the examples `(N, ...)`.
        logits: `classify(inputs)`, the predictions to stay close to.
        radius: the perturbation's L2 norm per example, in input units.
        noise: draws the power iteration's random start; a checkpointed generator makes
            resumed runs draw what uninterrupted ones do.
        xi: the size of the finite-difference step of the power iteration.

    Returns:
        A constant tensor (no gradient reaches any variable through it).
    """
    direction = xi * _unit(noise.normal(tf.shape(inputs), dtype=inputs.dtype))
    with tf.GradientTape() as tape:
        tape.watch(direction)
        divergence = kl_divergence(logits, classify(inputs + direction))
    return tf.stop_gradient(radius * _unit(tape.gradient(divergence, direction)))


def virtual_adversarial_loss(
    classify: Classifier, inputs: tf.Tensor, logits: tf.Tensor, radius: float, noise: tf.random.Generator
) -> tuple[tf.Tensor, tf.Tensor]:
    """`(loss, perturbation)`: mean `KL(p(x) || p(x + r_adv))` in nats, and `r_adv` `(N, ...)`."""
    perturbation = adversarial_perturbation(classify, inputs, logits, radius, noise)
    return kl_divergence(logits, classify(inputs + perturbation)), perturbation


def _unit(vectors: tf.Tensor) -> tf.Tensor:
    """Each example of `vectors` `(N, ...)` scaled to unit L2 norm.

    Scaled by its largest entry first: the power iteration's gradients are of the order of
    `xi`, below `tf.math.l2_normalize`'s epsilon, which would otherwise shrink them.
    """
    axes = tf.range(1, tf.rank(vectors))
    vectors = vectors / (tf.reduce_max(tf.abs(vectors), axis=axes, keepdims=True) + 1e-30)
    return tf.math.l2_normalize(vectors, axis=axes)
