"""The losses of the algorithms, in nats. Domain labels: 0 for source, 1 for target, throughout `dann`."""

from __future__ import annotations

import tensorflow as tf

SOURCE_DOMAIN = 0.0
TARGET_DOMAIN = 1.0


def label_loss(labels: tf.Tensor, class_logits: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy of integer labels `(N,)` under class logits `(N, C)`, in nats."""
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=tf.cast(class_logits, tf.float32))
    return tf.reduce_mean(per_example)


def prediction_entropy(class_logits: tf.Tensor) -> tf.Tensor:
    """Mean entropy of the predicted class distributions of logits `(N, C)`, in nats."""
    return tf.reduce_mean(example_entropy(class_logits))


def class_imbalance(class_logits: tf.Tensor) -> tf.Tensor:
    """`log C - H(mean_i p_i)` of logits `(N, C)`, in nats: 0 when the batch's mean prediction is uniform over the `C` classes.

    Minimised, it keeps predictions spread over the classes (the diversity term of
    information maximisation: Krause et al., NeurIPS 2010; SHOT, Liang et al., ICML 2020).
    """
    logits = tf.cast(class_logits, tf.float32)
    mean = tf.reduce_mean(tf.nn.softmax(logits), axis=0)
    num_classes = tf.cast(tf.shape(logits)[-1], tf.float32)
    return tf.math.log(num_classes) + tf.reduce_sum(mean * tf.math.log(mean + 1e-8))


def class_confusion(class_logits: tf.Tensor, temperature: float = 2.5) -> tf.Tensor:
    """Minimum class confusion (MCC; Jin et al., ECCV 2020): how much a batch's predictions `(N, C)` mix classes, in [0, C - 1) / C.

    With `Y = softmax(logits / T)` and each example weighted by its certainty,
    `w_i = N (1 + exp(-H(Y_i))) / sum_j (1 + exp(-H(Y_j)))` (held constant), the class
    correlation `M = Y^T diag(w) Y` `(C, C)` is normalised per class, `M_jk / sum_l M_lk`,
    and its off-diagonal mass averaged over the classes: `sum_{j != k} M~_jk / C`. It is 0 when
    each example is confidently one class and every class is predicted; a class that no
    example leans towards counts as confused, so unlike entropy minimisation it does not
    favour piling examples onto few classes.
    """
    logits = tf.cast(class_logits, tf.float32) / temperature
    probabilities = tf.nn.softmax(logits)
    certainty = 1.0 + tf.exp(-tf.stop_gradient(example_entropy(logits)))
    weights = tf.cast(tf.shape(logits)[0], tf.float32) * certainty / tf.reduce_sum(certainty)
    correlation = tf.matmul(probabilities * weights[:, None], probabilities, transpose_a=True)
    normalised = correlation / tf.maximum(tf.reduce_sum(correlation, axis=0, keepdims=True), 1e-30)  # 0/0 when a class underflows
    num_classes = tf.cast(tf.shape(logits)[-1], tf.float32)
    return (tf.reduce_sum(normalised) - tf.linalg.trace(normalised)) / num_classes


def example_entropy(class_logits: tf.Tensor) -> tf.Tensor:
    """`(N,)` entropy of each predicted class distribution of logits `(N, C)`, in nats."""
    logits = tf.cast(class_logits, tf.float32)
    return -tf.reduce_sum(tf.nn.softmax(logits) * tf.nn.log_softmax(logits), axis=-1)


def kl_divergence(reference_logits: tf.Tensor, class_logits: tf.Tensor) -> tf.Tensor:
    """Mean `KL(p_reference || p)` between the class distributions of two logits `(N, C)`, in nats.

    The reference is held constant (`tf.stop_gradient`): only `class_logits` are trained towards it.
    """
    reference = tf.stop_gradient(tf.cast(reference_logits, tf.float32))
    logits = tf.cast(class_logits, tf.float32)
    per_example = tf.reduce_sum(tf.nn.softmax(reference) * (tf.nn.log_softmax(reference) - tf.nn.log_softmax(logits)), axis=-1)
    return tf.reduce_mean(per_example)


def domain_loss(domain_logits: tf.Tensor, num_source: int | tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
    """Mean binary cross-entropy of the domain classifier, in nats.

    Args:
        domain_logits: `(N_s + N_t, 1)` logits of "target", source examples first.
        num_source: `N_s`, how many leading rows are source.
        weights: optional `(N_s + N_t,)` example weights (CDAN+E), normalised here to mean 1.
    """
    logits = tf.cast(tf.reshape(domain_logits, [-1]), tf.float32)
    labels = domain_labels(num_source, tf.shape(logits)[0] - num_source)
    per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    if weights is not None:
        per_example *= weights / tf.reduce_mean(weights)
    return tf.reduce_mean(per_example)


def domain_labels(num_source: int | tf.Tensor, num_target: int | tf.Tensor) -> tf.Tensor:
    """`(N_s + N_t,)` float32 domain labels: `N_s` zeros then `N_t` ones."""
    return tf.concat([tf.fill([num_source], SOURCE_DOMAIN), tf.fill([num_target], TARGET_DOMAIN)], axis=0)
