"""Confident pseudo-labels with augmentation consistency: self-training on the target domain.

FixMatch (Sohn et al., NeurIPS 2020) and its domain-adaptation form AdaMatch (Berthelot
et al., ICLR 2022): the model's confident predictions on target inputs become labels
for augmented copies of the same inputs,

    L_p = mean_i [max_c p(c | x_i) >= tau] * CE(argmax_c p(c | x_i), p(. | A(x_i)))

where `A` is a random augmentation (here a translation of up to `max_shift` pixels and
Gaussian noise). The pseudo-labels and the mask are constants of the loss: the model is
trained to agree with its confident self on perturbed inputs, never to be confident.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

Classifier = Callable[[tf.Tensor], tf.Tensor]


def random_translation(images: tf.Tensor, max_shift: int, noise: tf.random.Generator) -> tf.Tensor:
    """Each image of `(N, H, W, C)` moved by whole pixels, up to `max_shift` each way on each axis; edges repeated."""
    shifts = tf.cast(noise.uniform([tf.shape(images)[0], 2], -max_shift, max_shift + 1, dtype=tf.int32), tf.float32)
    ones, zeros = tf.ones_like(shifts[:, :1]), tf.zeros_like(shifts[:, :1])
    # Projective transforms map output to input coordinates: (x, y) <- (x - dx, y - dy).
    transforms = tf.concat([ones, zeros, -shifts[:, :1], zeros, ones, -shifts[:, 1:], zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=tf.constant(0.0, images.dtype),
        interpolation="NEAREST",
        fill_mode="NEAREST",
    )


def augment(inputs: tf.Tensor, max_shift: int, noise_std: float, noise: tf.random.Generator) -> tf.Tensor:
    """`inputs` `(N, ...)` translated (images `(N, H, W, C)` only, when `max_shift` > 0) plus Gaussian noise of `noise_std`."""
    if max_shift:
        if inputs.shape.rank != 4:
            raise ValueError(f"pseudo_label_shift applies to images (N, H, W, C); these inputs are {inputs.shape}. Set it to 0.")
        inputs = random_translation(inputs, max_shift, noise)
    if noise_std:
        inputs += noise_std * noise.normal(tf.shape(inputs), dtype=inputs.dtype)
    return inputs


def pseudo_label_terms(
    classify: Classifier,
    inputs: tf.Tensor,
    logits: tf.Tensor,
    threshold: float,
    max_shift: int,
    noise_std: float,
    noise: tf.random.Generator,
) -> dict[str, tf.Tensor]:
    """The pseudo-label loss of a target batch, and what it used.

    Args:
        classify: inputs `(N, ...)` to class logits `(N, C)`, the model being trained.
        inputs: the target examples `(N, ...)`.
        logits: `(N, C)`, the model's predictions on `inputs`, which give the pseudo-labels.
        threshold: `tau`, the confidence (largest class probability) a pseudo-label needs.
        max_shift, noise_std: the augmentation (see `augment`).
        noise: draws the augmentation; a checkpointed generator makes resumed runs draw what
            uninterrupted ones do.

    Returns:
        `pseudo_label_loss` (nats, averaged over the whole batch), `pseudo_label_share` (the
        share of the batch above the threshold) and `pseudo_label_confidence` `(N,)`, a constant.
    """
    probabilities = tf.nn.softmax(tf.stop_gradient(tf.cast(logits, tf.float32)))
    confidence = tf.reduce_max(probabilities, axis=-1)
    mask = tf.cast(confidence >= threshold, tf.float32)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.argmax(probabilities, axis=-1, output_type=tf.int32),
        logits=tf.cast(classify(augment(inputs, max_shift, noise_std, noise)), tf.float32),
    )
    return {
        "pseudo_label_loss": tf.reduce_mean(mask * per_example),
        "pseudo_label_share": tf.reduce_mean(mask),
        "pseudo_label_confidence": confidence,
    }
