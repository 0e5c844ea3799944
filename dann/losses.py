"""The two DANN losses. Domain labels: 0 for source, 1 for target, throughout `dann`."""

from __future__ import annotations

import tensorflow as tf

SOURCE_DOMAIN = 0.0
TARGET_DOMAIN = 1.0


def label_loss(labels: tf.Tensor, class_logits: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy of integer labels `(N,)` under class logits `(N, C)`, in nats."""
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(class_logits, tf.float32)
    )
    return tf.reduce_mean(per_example)


def prediction_entropy(class_logits: tf.Tensor) -> tf.Tensor:
    """Mean entropy of the predicted class distributions of logits `(N, C)`, in nats."""
    logits = tf.cast(class_logits, tf.float32)
    return tf.reduce_mean(-tf.reduce_sum(tf.nn.softmax(logits) * tf.nn.log_softmax(logits), axis=-1))


def domain_loss(domain_logits: tf.Tensor, num_source: int | tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy of the domain classifier, in nats.

    Args:
        domain_logits: `(N_s + N_t, 1)` logits of "target", source examples first.
        num_source: `N_s`, how many leading rows are source.
    """
    logits = tf.cast(tf.reshape(domain_logits, [-1]), tf.float32)
    labels = domain_labels(num_source, tf.shape(logits)[0] - num_source)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def domain_labels(num_source: int | tf.Tensor, num_target: int | tf.Tensor) -> tf.Tensor:
    """`(N_s + N_t,)` float32 domain labels: `N_s` zeros then `N_t` ones."""
    return tf.concat([tf.fill([num_source], SOURCE_DOMAIN), tf.fill([num_target], TARGET_DOMAIN)], axis=0)
