"""DANN (Ganin et al., JMLR 2016): the label loss on source, the domain loss through the gradient reversal."""

from __future__ import annotations

import keras
import tensorflow as tf

from dann import losses
from dann.algorithms.base import ADVERSARY, CLASSIFIER, FRACTION, NON_NEGATIVE, NON_NEGATIVE_INTEGER, POSITIVE, Algorithm, Metrics, accuracy
from dann.models import classifier_weights, frozen_classifier
from dann.self_training import pseudo_label_terms


class DANN(Algorithm):
    """Domain-adversarial training (Ganin et al., JMLR 2016, algorithm 1).

    Minimises, over the feature extractor `G_f`, the label classifier `G_y` and the domain
    classifier `G_d`, with the reversal `R_lambda` (identity forward, `-lambda` backward):

        L = L_y(G_y(G_f(x_s)), y_s) + w_d * L_d(G_d(R_lambda(G_f(x))), d)
            + w_e * H(G_y(G_f(x_t))) + w_b * B(x_t) + w_m * M(x_t) + w_p * L_p(x_t)

    `L_y` is the source cross-entropy and `L_d` the binary cross-entropy of the domain labels
    `d` (0 source, 1 target) on both batches: `G_d` minimises `L_d`; through the reversal,
    `G_f` maximises it. Four optional terms act on the target batch (all weighted 0 by
    default, the paper's DANN): `H`, the mean prediction entropy (entropy minimisation,
    Grandvalet & Bengio, 2005); `B`, how far the batch's mean prediction is from uniform
    (`losses.class_imbalance`), which keeps the other terms from piling target examples onto a
    few classes (`H + B` is information maximisation, as in SHOT: Liang et al., ICML 2020);
    `M`, minimum class confusion (`losses.class_confusion`, MCC: Jin et al., ECCV 2020);
    `L_p`, self-training, confident predictions as labels of augmented copies
    (`dann.self_training`; it costs an extra pass over the target batch).

    Args:
        model, optimizer, adaptation_schedule, total_steps: see `Algorithm`.
        domain_loss_weight: `w_d`, >= 0.
        target_entropy_weight: `w_e`, >= 0.
        class_balance_weight: `w_b`, >= 0.
        class_confusion_weight: `w_m`, >= 0 (MCC's paper: 1).
        confusion_temperature: the temperature of `M`'s softmax, > 0 (MCC's paper: 2.5).
        pseudo_label_weight: `w_p`, >= 0.
        pseudo_label_threshold: the confidence a pseudo-label needs, in [0, 1).
        pseudo_label_shift: the augmentation's largest translation, in pixels (images only).
        pseudo_label_noise: the standard deviation of the augmentation's Gaussian noise, in input units.
        teacher_decay: in [0, 1); > 0 takes the pseudo-labels from a mean teacher (Tarvainen &
            Valpola, 2017; French et al., ICLR 2018), an exponential moving average of the
            classifier's weights with this decay per step, which is also the network evaluated
            and, after training, deployed (`model` then holds its weights); 0: from the model itself.
        seed: seed of the augmentation's random draws (the config passes the run's `seed`).
        **machinery: `jit_compile`, `strategy`, `feature_pass` (see `Algorithm`).

    Example:
        >>> algorithm = DANN(model, keras.optimizers.SGD(0.01), SigmoidRamp(), total_steps=1000)
        >>> metrics = algorithm.update(source_x, source_y, target_x, step=tf.constant(0))
    """

    HYPERPARAMETERS = {
        "domain_loss_weight": NON_NEGATIVE,
        "target_entropy_weight": NON_NEGATIVE,
        "class_balance_weight": NON_NEGATIVE,
        "class_confusion_weight": NON_NEGATIVE,
        "confusion_temperature": POSITIVE,
        "pseudo_label_weight": NON_NEGATIVE,
        "pseudo_label_threshold": FRACTION,
        "pseudo_label_shift": NON_NEGATIVE_INTEGER,
        "pseudo_label_noise": NON_NEGATIVE,
        "teacher_decay": FRACTION,
    }
    REVERSED_LOSS = "domain_loss"
    CONSTANTS = ("pseudo_label_confidence",)

    def __init__(
        self,
        model,
        optimizer,
        adaptation_schedule,
        total_steps,
        domain_loss_weight: float = 1.0,
        target_entropy_weight: float = 0.0,
        class_balance_weight: float = 0.0,
        class_confusion_weight: float = 0.0,
        confusion_temperature: float = 2.5,
        pseudo_label_weight: float = 0.0,
        pseudo_label_threshold: float = 0.95,
        pseudo_label_shift: int = 2,
        pseudo_label_noise: float = 0.1,
        teacher_decay: float = 0.0,
        seed: int = 0,
        **machinery,
    ):
        self.check_hyperparameters(
            domain_loss_weight=domain_loss_weight,
            target_entropy_weight=target_entropy_weight,
            class_balance_weight=class_balance_weight,
            class_confusion_weight=class_confusion_weight,
            confusion_temperature=confusion_temperature,
            pseudo_label_weight=pseudo_label_weight,
            pseudo_label_threshold=pseudo_label_threshold,
            pseudo_label_shift=pseudo_label_shift,
            pseudo_label_noise=pseudo_label_noise,
            teacher_decay=teacher_decay,
        )
        if adaptation_schedule is None:
            raise ValueError(f"{type(self).__name__} needs an adaptation_schedule (see dann.schedules); for no adaptation use SourceOnly.")
        self.domain_loss_weight = domain_loss_weight
        self.target_entropy_weight = target_entropy_weight
        self.class_balance_weight = class_balance_weight
        self.class_confusion_weight = class_confusion_weight
        self.confusion_temperature = confusion_temperature
        self.pseudo_label_weight = pseudo_label_weight
        self.pseudo_label_threshold = pseudo_label_threshold
        self.pseudo_label_shift = int(pseudo_label_shift)
        self.pseudo_label_noise = pseudo_label_noise
        self.teacher_decay = teacher_decay
        super().__init__(model, optimizer, adaptation_schedule, total_steps, **machinery)
        with self.strategy.scope():
            self.augmentation_noise = tf.random.Generator.from_seed(seed)
            self.mean_teacher = frozen_classifier(model, name="mean_teacher") if pseudo_label_weight and teacher_decay else None

    def checkpoint_state(self) -> dict[str, tf.Module]:
        state = {"augmentation_noise": self.augmentation_noise}
        return state if self.mean_teacher is None else {**state, "mean_teacher": self.mean_teacher}

    def classifier(self) -> keras.Model:
        return self.model if self.mean_teacher is None else self.mean_teacher

    def finish(self) -> None:
        """Deploys the mean teacher, if any: `model`'s feature extractor and label classifier take its weights."""
        if self.mean_teacher is not None:
            for weight, teacher_weight in zip(classifier_weights(self.model), self.mean_teacher.weights):
                weight.assign(teacher_weight)

    def before_update(self, step: tf.Tensor) -> None:
        """Moves the mean teacher (if any) towards the current weights: `teacher <- d * teacher + (1 - d) * weights`."""
        if self.mean_teacher is not None:
            for teacher_weight, weight in zip(self.mean_teacher.weights, classifier_weights(self.model)):
                teacher_weight.assign(self.teacher_decay * teacher_weight + (1.0 - self.teacher_decay) * weight)

    def forward(self, source_x, source_y, target_x, lambda_, training=True) -> Metrics:
        """`label_loss`, `domain_loss`, `target_entropy` (nats), `label_accuracy` (source batch), `domain_accuracy`,
        with `class_balance_weight` the `class_imbalance` (nats) of the target batch, with
        `class_confusion_weight` its `class_confusion`, and with `pseudo_label_weight` the terms
        of `dann.self_training.pseudo_label_terms`."""
        num_source = tf.shape(source_x)[0]
        features, class_logits = self.classify(source_x, target_x, training)
        domain_logits = self.model.domain_logits(features, lambda_, training=training)
        terms = {**classification_terms(class_logits, source_y, num_source), **domain_terms(domain_logits, num_source)}
        if self.class_balance_weight:
            terms["class_imbalance"] = losses.class_imbalance(class_logits[num_source:])
        if self.class_confusion_weight:
            terms["class_confusion"] = losses.class_confusion(class_logits[num_source:], self.confusion_temperature)
        return {**terms, **self.self_training_terms(target_x, class_logits[num_source:], training)}

    def self_training_terms(self, target_x: tf.Tensor, target_logits: tf.Tensor, training: bool) -> Metrics:
        """The pseudo-label terms of the target batch `(N_t, ...)` with its logits `(N_t, C)`; none when the weight is 0."""
        if not self.pseudo_label_weight:
            return {}
        if self.mean_teacher is not None:
            target_logits = self.mean_teacher(target_x, training=False)
        return pseudo_label_terms(
            lambda inputs: self.model(inputs, training=training),
            target_x,
            target_logits,
            self.pseudo_label_threshold,
            self.pseudo_label_shift,
            self.pseudo_label_noise,
            self.augmentation_noise,
        )

    def total_loss(self, terms: Metrics) -> tf.Tensor:
        """`label_loss + w_d * domain_loss + w_e * target_entropy` (+ `w_b * class_imbalance + w_m * class_confusion
        + w_p * pseudo_label_loss`)."""
        loss = terms["label_loss"] + self.domain_loss_weight * terms["domain_loss"]
        if self.target_entropy_weight:
            loss += self.target_entropy_weight * terms["target_entropy"]
        if self.class_balance_weight:
            loss += self.class_balance_weight * terms["class_imbalance"]
        if self.class_confusion_weight:
            loss += self.class_confusion_weight * terms["class_confusion"]
        if self.pseudo_label_weight:
            loss += self.pseudo_label_weight * terms["pseudo_label_loss"]
        return loss

    def gradient_paths(self) -> dict[str, frozenset[str]]:
        paths = {"label_loss": CLASSIFIER, "domain_loss": ADVERSARY, "target_entropy": CLASSIFIER}
        if self.class_balance_weight:
            paths["class_imbalance"] = CLASSIFIER
        if self.class_confusion_weight:
            paths["class_confusion"] = CLASSIFIER
        if self.pseudo_label_weight:
            paths["pseudo_label_loss"] = CLASSIFIER
        return paths


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
