"""The bounds every adaptation result sits between: training on the source only, and on the labelled target."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from dann.algorithms.base import CLASSIFIER, DOMAIN_CLASSIFIER, Algorithm, Metrics
from dann.algorithms.dann import classification_terms, domain_terms
from dann.data import DomainDatasets


class SourceOnly(Algorithm):
    """No adaptation, the lower bound (Ganin et al., JMLR 2016, table 2, "source only").

        L = L_y(G_y(G_f(x_s)), y_s) + L_d(G_d(stop_gradient(G_f(x))), d)

    The domain classifier still trains, on features held constant, as a probe of how
    separable the domains are (`domain_accuracy`); its loss never reaches the features.
    This is DANN with lambda = 0, computed without the reversal. The adaptation schedule,
    if given, is ignored.

    Args:
        model, optimizer, adaptation_schedule, total_steps: see `Algorithm`.
        **machinery: `jit_compile`, `strategy`, `feature_pass` (see `Algorithm`).
    """

    def __init__(self, model, optimizer, adaptation_schedule=None, total_steps=1, **machinery):
        super().__init__(model, optimizer, None, total_steps, **machinery)

    def forward(self, source_x, source_y, target_x, lambda_, training=True) -> Metrics:
        """`label_loss`, `domain_loss` (the probe's), `target_entropy`, `label_accuracy`, `domain_accuracy`."""
        num_source = tf.shape(source_x)[0]
        features, class_logits = self.classify(source_x, target_x, training)
        domain_logits = self.model.domain_logits(tf.stop_gradient(features), None, training=training)
        return {**classification_terms(class_logits, source_y, num_source), **domain_terms(domain_logits, num_source)}

    def total_loss(self, terms: Metrics) -> tf.Tensor:
        """`label_loss + domain_loss`; the two share no variable."""
        return terms["label_loss"] + terms["domain_loss"]

    def gradient_paths(self) -> dict[str, frozenset[str]]:
        return {"label_loss": CLASSIFIER, "domain_loss": frozenset({DOMAIN_CLASSIFIER})}


class TargetOnly(SourceOnly):
    """Training on the labelled target, the upper bound (Ganin et al., JMLR 2016, table 2, "train on target").

    `SourceOnly` with the target domain in the source's place: it trains on the target's
    training labels and reports `source_test_accuracy` on the target's test split. Source
    augmentation is not applied.
    """

    def training_datasets(self, datasets: DomainDatasets) -> DomainDatasets:
        return dataclasses.replace(datasets, source_train=datasets.target_train, source_test=datasets.target_test, augment_source=None)
