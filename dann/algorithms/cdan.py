"""CDAN and CDAN+E (Long et al., NeurIPS 2018): the domain classifier conditioned on the class predictions."""

from __future__ import annotations

import tensorflow as tf

from dann import losses
from dann.algorithms.base import NON_NEGATIVE, POSITIVE_INTEGER, Metrics
from dann.algorithms.dann import DANN, classification_terms, domain_terms
from dann.layers import MultilinearMap


class CDAN(DANN):
    """Conditional domain adversarial network (Long et al., NeurIPS 2018, equations 6-7 and 10).

    DANN whose domain classifier sees the multilinear map `T(f, g)` of the features `f` and
    the class probabilities `g = softmax(G_y(f))` instead of `f` alone, so that it aligns
    the joint distribution of features and predictions (the multimodal structure that plain
    DANN may collapse):

        L = L_y + w_d * L_d(G_d(R_lambda(T(f, g))), d) [+ w_e * H(g_t)]

    `T(f, g) = f (x) g` when `F * C <= max_full_dim`, else the randomised map
    `(f R_f) * (g R_g) / sqrt(d)` (`dann.layers.MultilinearMap`). `g` is held constant in
    `T`, as in the authors' code: the domain loss trains the features, not the label head.
    With `entropy_conditioning=True` (CDAN+E, equation 10), each example's domain loss is weighted
    by `1 + exp(-H(g))`, normalised to mean 1, which puts the alignment on confidently
    classified examples.

    The model must carry the map: `build_adaptation_model(..., domain_conditioning=CDAN.domain_conditioning())`;
    `dann.train` builds it from the config.

    Args:
        model, optimizer, adaptation_schedule, total_steps: see `Algorithm`.
        entropy_conditioning: weight the domain loss by prediction certainty (CDAN+E).
        domain_loss_weight, target_entropy_weight: as in `DANN`.
        max_full_dim: the largest `F * C` for which the exact map `f (x) g` is used (the model's map was built with it).
        randomized_dim: `d`, the width of the randomised map beyond `max_full_dim` (the model's map was built with it).
        **machinery: `jit_compile`, `strategy`, `feature_pass` (see `Algorithm`).
    """

    HYPERPARAMETERS = {
        "domain_loss_weight": NON_NEGATIVE,
        "target_entropy_weight": NON_NEGATIVE,
        "max_full_dim": POSITIVE_INTEGER,
        "randomized_dim": POSITIVE_INTEGER,
    }
    CONSTANTS = ("domain_conditioning_probabilities",)

    def __init__(
        self,
        model,
        optimizer,
        adaptation_schedule,
        total_steps,
        entropy_conditioning: bool = False,
        domain_loss_weight: float = 1.0,
        target_entropy_weight: float = 0.0,
        max_full_dim: int = 4096,
        randomized_dim: int = 1024,
        **machinery,
    ):
        self.check_hyperparameters(max_full_dim=max_full_dim, randomized_dim=randomized_dim)
        if model.domain_conditioning is None:
            raise ValueError(
                f"{type(self).__name__} needs a model whose domain classifier sees the multilinear map: build it with "
                f"build_adaptation_model(..., domain_conditioning={type(self).__name__}.domain_conditioning())."
            )
        built = (model.domain_conditioning.max_full_dim, model.domain_conditioning.randomized_dim)
        if built != (max_full_dim, randomized_dim):
            raise ValueError(
                f"{type(self).__name__}: the model's multilinear map was built with max_full_dim={built[0]}, "
                f"randomized_dim={built[1]}. Received: max_full_dim={max_full_dim}, randomized_dim={randomized_dim}. Build "
                f"the model with domain_conditioning={type(self).__name__}.domain_conditioning(max_full_dim, randomized_dim)."
            )
        self.entropy_conditioning = entropy_conditioning
        super().__init__(
            model,
            optimizer,
            adaptation_schedule,
            total_steps,
            domain_loss_weight,
            target_entropy_weight,
            **self.only_machinery(machinery),
        )

    @staticmethod
    def domain_conditioning(max_full_dim: int = 4096, randomized_dim: int = 1024, **_) -> MultilinearMap:
        """The multilinear map a CDAN model carries between its features and its domain classifier."""
        return MultilinearMap(max_full_dim=max_full_dim, randomized_dim=randomized_dim, name="multilinear_map")

    def conditioning_probabilities(self, class_logits: tf.Tensor) -> tf.Tensor:
        """`g` `(N, C)`: the class probabilities the map conditions on, held constant."""
        return tf.stop_gradient(tf.nn.softmax(tf.cast(class_logits, tf.float32)))

    def forward(self, source_x, source_y, target_x, lambda_, training=True) -> Metrics:
        """DANN's terms, the domain loss on the map; and the (constant) class probabilities the map used."""
        num_source = tf.shape(source_x)[0]
        features, class_logits = self.classify(source_x, target_x, training)
        probabilities = self.conditioning_probabilities(class_logits)
        domain_logits = self.model.domain_logits(features, lambda_, probabilities, training=training)
        weights = 1.0 + tf.exp(-losses.example_entropy(tf.stop_gradient(class_logits))) if self.entropy_conditioning else None
        return {
            **classification_terms(class_logits, source_y, num_source),
            **domain_terms(domain_logits, num_source, weights),
            "domain_conditioning_probabilities": probabilities,
        }
