"""VADA and DIRT-T (Shu et al., ICLR 2018): DANN plus the cluster assumption, then refinement on the target."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from dann import losses
from dann.algorithms.base import CLASSIFIER, FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INTEGER, Metrics
from dann.algorithms.dann import DANN, classification_terms, domain_terms
from dann.models import classifier_weights, frozen_classifier
from dann.vat import virtual_adversarial_loss

REFINEMENT_FRACTION = 0.3  # DIRT-T's default share of the steps spent refining


class VADA(DANN):
    """Virtual adversarial domain adaptation (Shu et al., ICLR 2018, equation 6).

    DANN plus two terms of the cluster assumption (decision boundaries away from dense
    regions of data): the conditional entropy of target predictions and virtual adversarial
    training (VAT, `dann.vat`), a penalty on how much a perturbation of norm `vat_radius`
    can change a prediction:

        L = L_y + w_d * L_d(lambda) + lambda_s * L_v(x_s) + lambda_t * (H(x_t) + L_v(x_t))

    `lambda_t` is `target_entropy_weight` and weights both target terms, as in the paper;
    the adversarial term is DANN's (gradient reversal, lambda from the schedule), where
    the paper trains the domain classifier with a separate GAN-style loss.

    Args:
        model, optimizer, adaptation_schedule, total_steps: see `Algorithm`.
        source_vat_weight: `lambda_s`, >= 0 (paper's code: 1; 0 skips the term).
        target_entropy_weight: `lambda_t`, >= 0 (paper's code: 0.01).
        vat_radius: the perturbation's size as its root mean square per input element, > 0:
            its L2 norm is `vat_radius * sqrt(D)` for inputs of `D` elements, so one value
            suits 2-D points and images alike. Default 0.063: the paper's norm 3.5 on
            instance-normalised 32x32x3 images.
        domain_loss_weight: as in `DANN`.
        seed: seed of VAT's random directions (the config passes the run's `seed`).
        **machinery: `jit_compile`, `strategy`, `feature_pass` (see `Algorithm`).
    """

    HYPERPARAMETERS = {
        "domain_loss_weight": NON_NEGATIVE,
        "target_entropy_weight": NON_NEGATIVE,
        "source_vat_weight": NON_NEGATIVE,
        "vat_radius": POSITIVE,
    }
    CONSTANTS = ("source_perturbation", "target_perturbation")
    # VAT penalises small changes of the prediction, near bfloat16's resolution. On MNIST-M
    # bfloat16 averaged 2.0 (VADA) and 2.3 (DIRT-T) points under float32 over 3 seeds, where
    # DANN and CDAN were within a point either way (docs/performance.md): `auto` keeps float32.
    BFLOAT16_SAFE = False

    def __init__(
        self,
        model,
        optimizer,
        adaptation_schedule,
        total_steps,
        source_vat_weight: float = 1.0,
        target_entropy_weight: float = 0.01,
        vat_radius: float = 0.063,
        domain_loss_weight: float = 1.0,
        seed: int = 0,
        **machinery,
    ):
        self.check_hyperparameters(source_vat_weight=source_vat_weight, vat_radius=vat_radius)
        self.source_vat_weight = source_vat_weight
        self.vat_radius = vat_radius
        super().__init__(
            model,
            optimizer,
            adaptation_schedule,
            total_steps,
            domain_loss_weight,
            target_entropy_weight,
            **self.only_machinery(machinery),
        )
        with self.strategy.scope():
            self.vat_noise = tf.random.Generator.from_seed(seed)

    def checkpoint_state(self) -> dict[str, tf.Module]:
        return {"vat_noise": self.vat_noise}

    def forward(self, source_x, source_y, target_x, lambda_, training=True) -> Metrics:
        """DANN's terms, `target_vat` and `source_vat` (nats), and the perturbations they used."""
        return self._terms_and_target_logits(source_x, source_y, target_x, lambda_, training)[0]

    def _terms_and_target_logits(self, source_x, source_y, target_x, lambda_, training) -> tuple[Metrics, tf.Tensor]:
        num_source = tf.shape(source_x)[0]
        features, class_logits = self.classify(source_x, target_x, training)
        domain_logits = self.model.domain_logits(features, lambda_, training=training)
        terms = {**classification_terms(class_logits, source_y, num_source), **domain_terms(domain_logits, num_source)}

        def predict_logits(inputs):
            return self.model(inputs, training=training)

        radius = self.vat_radius * float(source_x.shape[1:].num_elements()) ** 0.5
        terms["target_vat"], terms["target_perturbation"] = virtual_adversarial_loss(
            predict_logits, target_x, class_logits[num_source:], radius, self.vat_noise
        )
        if self.source_vat_weight:
            terms["source_vat"], terms["source_perturbation"] = virtual_adversarial_loss(
                predict_logits, source_x, class_logits[:num_source], radius, self.vat_noise
            )
        return terms, class_logits[num_source:]

    def total_loss(self, terms: Metrics) -> tf.Tensor:
        """`label_loss + w_d * domain_loss + lambda_s * source_vat + lambda_t * (target_entropy + target_vat)`."""
        loss = terms["label_loss"] + self.domain_loss_weight * terms["domain_loss"]
        if self.source_vat_weight:
            loss += self.source_vat_weight * terms["source_vat"]
        return loss + self.target_entropy_weight * (terms["target_entropy"] + terms["target_vat"])

    def gradient_paths(self) -> dict[str, frozenset[str]]:
        paths = {**super().gradient_paths(), "target_vat": CLASSIFIER}
        if self.source_vat_weight:
            paths["source_vat"] = CLASSIFIER
        return paths


class DIRTT(VADA):
    """Decision-boundary iterative refinement training with a teacher (Shu et al., ICLR 2018, equation 9).

    Trains as `VADA` for the first `1 - refinement_fraction` of the steps, then refines on
    the target (alone unless `w_s` > 0): with `h_{n-1}` the teacher, a frozen copy of the
    classifier taken every `teacher_update_every` steps,

        L = lambda_t * (H(x_t) + L_v(x_t)) + beta * KL(h_{n-1}(x_t) || h(x_t)) + w_b * B(x_t) + w_s * L_y

    moving the decision boundaries away from target data while staying close to the
    previous model (the paper's natural-gradient step). During refinement the domain and
    source VAT terms get weight 0 (the domain classifier then stops training). The paper's
    teacher is an exponential moving average of the weights; here it is a snapshot.
    Two terms the paper does not have, both 0 by default: `w_b * B`
    (`losses.class_imbalance`) pulls the batch's mean prediction towards uniform, against
    refinement piling the target onto a few classes; `w_s * L_y`, the source label loss,
    anchors the classifier to the source labels when the starting model is too weak for
    target-only refinement.

    Args:
        model, optimizer, adaptation_schedule, total_steps: see `Algorithm`.
        refinement_fraction: the share of the steps spent refining, in [0, 1).
        teacher_weight: `beta`, > 0; `None` (the default): equal to `lambda_t`
            (`target_entropy_weight`), as in the paper's code, where both are 0.01.
        teacher_update_every: steps between teacher snapshots during refinement, >= 1.
        class_balance_weight: `w_b`, >= 0: the weight of the target batch's class imbalance during
            refinement only (the paper's DIRT-T: 0).
        refinement_source_weight: `w_s`, >= 0: the weight of the source label loss during
            refinement (the paper's DIRT-T: 0).
        **vada_settings: `VADA`'s hyperparameters (and `jit_compile`, `strategy`, `feature_pass`), as in `VADA`.
    """

    HYPERPARAMETERS = {
        **VADA.HYPERPARAMETERS,
        "refinement_fraction": FRACTION,
        "teacher_weight": POSITIVE,
        "teacher_update_every": POSITIVE_INTEGER,
        "class_balance_weight": NON_NEGATIVE,
        "refinement_source_weight": NON_NEGATIVE,
    }
    CONSTANTS = (*VADA.CONSTANTS, "teacher_probabilities")

    def __init__(
        self,
        model,
        optimizer,
        adaptation_schedule,
        total_steps,
        refinement_fraction: float = REFINEMENT_FRACTION,
        teacher_weight: float | None = None,
        teacher_update_every: int = 1000,
        class_balance_weight: float = 0.0,
        refinement_source_weight: float = 0.0,
        **vada_settings,
    ):
        self.check_hyperparameters(
            refinement_fraction=refinement_fraction,
            teacher_weight=teacher_weight,
            teacher_update_every=teacher_update_every,
            class_balance_weight=class_balance_weight,
            refinement_source_weight=refinement_source_weight,
        )
        super().__init__(model, optimizer, adaptation_schedule, total_steps, **vada_settings)
        self.refinement_start = self.adaptation_steps(total_steps, refinement_fraction=refinement_fraction)
        self.teacher_weight = self.target_entropy_weight if teacher_weight is None else teacher_weight
        self.teacher_update_every = int(teacher_update_every)
        self.class_balance_weight = class_balance_weight
        self.refinement_source_weight = refinement_source_weight
        with self.strategy.scope():
            self.teacher = frozen_classifier(model, name="teacher")
            self.refining = tf.Variable(0.0, trainable=False, name="refining")  # 1.0 once refinement has begun

    @classmethod
    def adaptation_steps(cls, total_steps: int, refinement_fraction: float = REFINEMENT_FRACTION, **hyperparameters: Any) -> int:
        """VADA's phase: refinement, the last `refinement_fraction` of the steps, trains no domain classifier."""
        return round(total_steps * (1.0 - refinement_fraction))

    def run_adaptation_steps(self) -> int:
        return self.refinement_start

    def before_update(self, step: tf.Tensor) -> None:
        """Enters refinement at its first step, and takes a teacher snapshot every `teacher_update_every` steps of it."""
        steps_refined = tf.cast(step, tf.int64) - self.refinement_start
        self.refining.assign(tf.cast(steps_refined >= 0, tf.float32))
        due = tf.logical_and(steps_refined >= 0, steps_refined % self.teacher_update_every == 0)
        tf.cond(due, self._snapshot_teacher, lambda: tf.constant(False))

    def _snapshot_teacher(self) -> tf.Tensor:
        for teacher_weight, student_weight in zip(self.teacher.weights, classifier_weights(self.model)):
            teacher_weight.assign(student_weight)
        return tf.constant(True)

    def checkpoint_state(self) -> dict[str, tf.Module]:
        return {**super().checkpoint_state(), "teacher": self.teacher}

    def forward(self, source_x, source_y, target_x, lambda_, training=True) -> Metrics:
        """VADA's terms, `teacher_kl` (nats) on the target batch, the teacher's probabilities, and with
        `class_balance_weight` the target batch's `class_imbalance` (nats)."""
        terms, target_logits = self._terms_and_target_logits(source_x, source_y, target_x, lambda_, training)
        if self.class_balance_weight:
            terms["class_imbalance"] = losses.class_imbalance(target_logits)
        teacher_logits = self.teacher(target_x, training=False)
        terms["teacher_kl"] = losses.kl_divergence(teacher_logits, target_logits)
        terms["teacher_probabilities"] = tf.nn.softmax(tf.cast(teacher_logits, tf.float32))
        return terms

    def total_loss(self, terms: Metrics) -> tf.Tensor:
        """VADA's loss, then `lambda_t * (target_entropy + target_vat) + beta * teacher_kl`
        (`+ w_b * class_imbalance + w_s * label_loss`) once refining."""
        target_terms = self.target_entropy_weight * (terms["target_entropy"] + terms["target_vat"])
        refinement = target_terms + self.teacher_weight * terms["teacher_kl"]
        if self.class_balance_weight:
            refinement += self.class_balance_weight * terms["class_imbalance"]
        if self.refinement_source_weight:
            refinement += self.refinement_source_weight * terms["label_loss"]
        return (1.0 - self.refining) * super().total_loss(terms) + self.refining * refinement

    def gradient_paths(self) -> dict[str, frozenset[str]]:
        # DANN's paths (through VADA's) already declare `class_imbalance` when its weight is set.
        return {**super().gradient_paths(), "teacher_kl": CLASSIFIER}
