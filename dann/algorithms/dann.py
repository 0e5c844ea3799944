"""DANN (Ganin et al., JMLR 2016): the label loss on source, the domain loss through the gradient reversal."""

from __future__ import annotations

import tensorflow as tf

from dann import losses
from dann.algorithms.base import ADVERSARY, CLASSIFIER, NON_NEGATIVE, Algorithm, Metrics, accuracy


class DANN(Algorithm):
    """Domain-adversarial training (Ganin et al., JMLR 2016, algorithm 1).

    Minimises, over the feature extractor `G_f`, the label classifier `G_y` and the domain
    classifier `G_d`, with the reversal `R_lambda` (identity forward, `-lambda` backward):

        L = L_y(G_y(G_f(x_s)), y_s) + w_d * L_d(G_d(R_lambda(G_f(x))), d) + w_e * H(G_y(G_f(x_t)))

    `L_y` is the source cross-entropy, `L_d` the binary cross-entropy of the domain labels
    `d` (0 source, 1 target) on both batches, and `H` the mean prediction entropy on the
    target batch (entropy minimisation, Grandvalet & Bengio, 2005; 0 is the paper's DANN).
    `G_d` minimises `L_d`; through the reversal, `G_f` maximises it.

    Args:
        model, optimizer, adaptation_schedule, total_steps: see `Algorithm`.
        domain_loss_weight: `w_d`, >= 0.
        target_entropy_weight: `w_e`, >= 0.
        **machinery: `jit_compile`, `strategy`, `feature_pass` (see `Algorithm`).

    Example:
        >>> algorithm = DANN(model, keras.optimizers.SGD(0.01), SigmoidRamp(), total_steps=1000)
        >>> metrics = algorithm.update(source_x, source_y, target_x, step=tf.constant(0))
    """

    HYPERPARAMETERS = {"domain_loss_weight": NON_NEGATIVE, "target_entropy_weight": NON_NEGATIVE}
    REVERSED_LOSS = "domain_loss"

    def __init__(
        self,
        model,
        optimizer,
        adaptation_schedule,
        total_steps,
        domain_loss_weight: float = 1.0,
        target_entropy_weight: float = 0.0,
        **machinery,
    ):
        self.check_hyperparameters(domain_loss_weight=domain_loss_weight, target_entropy_weight=target_entropy_weight)
        if adaptation_schedule is None:
            raise ValueError(f"{type(self).__name__} needs an adaptation_schedule (see dann.schedules); for no adaptation use SourceOnly.")
        self.domain_loss_weight = domain_loss_weight
        self.target_entropy_weight = target_entropy_weight
        super().__init__(model, optimizer, adaptation_schedule, total_steps, **machinery)

    def forward(self, source_x, source_y, target_x, lambda_, training=True) -> Metrics:
        """`label_loss`, `domain_loss`, `target_entropy` (nats), `label_accuracy` (source batch), `domain_accuracy`."""
        num_source = tf.shape(source_x)[0]
        features, class_logits = self.classify(source_x, target_x, training)
        domain_logits = self.model.domain_logits(features, lambda_, training=training)
        return {**classification_terms(class_logits, source_y, num_source), **domain_terms(domain_logits, num_source)}

    def total_loss(self, terms: Metrics) -> tf.Tensor:
        """`label_loss + domain_loss_weight * domain_loss + target_entropy_weight * target_entropy`."""
        loss = terms["label_loss"] + self.domain_loss_weight * terms["domain_loss"]
        if self.target_entropy_weight:
            loss += self.target_entropy_weight * terms["target_entropy"]
        return loss

    def gradient_paths(self) -> dict[str, frozenset[str]]:
        return {"label_loss": CLASSIFIER, "domain_loss": ADVERSARY, "target_entropy": CLASSIFIER}


def classification_terms(class_logits: tf.Tensor, source_y: tf.Tensor, num_source: tf.Tensor) -> Metrics:
    """`label_loss`, `target_entropy` and `label_accuracy` of class logits `(N_s + N_t, C)`, source first."""
    return {
        "label_loss": losses.label_loss(source_y, class_logits[:num_source]),
        "target_entropy": losses.prediction_entropy(class_logits[num_source:]),
        "label_accuracy": accuracy(tf.argmax(class_logits[:num_source], axis=-1), source_y),
    }


def domain_terms(domain_logits: tf.Tensor, num_source: tf.Tensor, weights: tf.Tensor | None = None) -> Metrics:
    """`domain_loss` (optionally example-weighted) and `domain_accuracy` of domain logits `(N_s + N_t, 1)`."""
    num_target = tf.shape(domain_logits)[0] - num_source
    return {
        "domain_loss": losses.domain_loss(domain_logits, num_source, weights),
        "domain_accuracy": accuracy(tf.reshape(domain_logits, [-1]) > 0, losses.domain_labels(num_source, num_target) > 0.5),
    }
