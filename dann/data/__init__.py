"""Datasets: source/target pairs and the batches a training step consumes."""

from dann.data.domains import DomainDatasets, evaluation_batches, training_batches
from dann.data.moons import moons_domains

__all__ = ["DomainDatasets", "evaluation_batches", "moons_domains", "training_batches"]
