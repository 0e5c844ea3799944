"""The inter-twinning moons of Ganin et al. (JMLR 2016, section 5.1), generated with numpy.

Source: two labelled half-moons. Target: the same distribution rotated by
`rotation_degrees` about the data's centre. No download, fully determined by `seed`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dann.data.domains import DomainDatasets

_CENTRE = np.array([0.5, 0.25])  # the centre of the two moons' bounding box


def make_moons(num_examples: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half-circles with Gaussian noise.

    Returns:
        `(points (N, 2) float32, labels (N,) int64)`: label 0 is the upper moon.
    """
    num_upper = num_examples // 2
    num_lower = num_examples - num_upper
    upper_angles = rng.uniform(0.0, np.pi, num_upper)
    lower_angles = rng.uniform(0.0, np.pi, num_lower)
    upper = np.stack([np.cos(upper_angles), np.sin(upper_angles)], axis=1)
    lower = np.stack([1.0 - np.cos(lower_angles), 0.5 - np.sin(lower_angles)], axis=1)
    points = np.concatenate([upper, lower]) + rng.normal(scale=noise, size=(num_examples, 2))
    labels = np.concatenate([np.zeros(num_upper), np.ones(num_lower)]).astype(np.int64)
    order = rng.permutation(num_examples)
    return points[order].astype(np.float32), labels[order]


def rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    """Rotates `(N, 2)` points counter-clockwise by `degrees` about the moons' centre."""
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return ((points - _CENTRE) @ rotation.T + _CENTRE).astype(np.float32)


def moons_domains(
    seed: int,
    num_train: int = 300,
    num_test: int = 1000,
    noise: float = 0.1,
    rotation_degrees: float = 35.0,
) -> DomainDatasets:
    """Source moons and target moons rotated by `rotation_degrees`, each with a train and a test split.

    Args:
        seed: the generator's seed; the same seed gives the same points.
        num_train: examples per domain in the training split (paper: 300).
        num_test: examples per domain in the test split.
        noise: standard deviation of the Gaussian noise added to each coordinate.
        rotation_degrees: the domain shift.
    """
    if num_train < 2 or num_test < 2:
        raise ValueError(f"moons: num_train and num_test must be >= 2. Received: {num_train}, {num_test}")
    rng = np.random.default_rng(seed)
    splits = {}
    for domain, degrees in (("source", 0.0), ("target", rotation_degrees)):
        for split, size in (("train", num_train), ("test", num_test)):
            points, labels = make_moons(size, noise, rng)
            splits[f"{domain}_{split}"] = tf.data.Dataset.from_tensor_slices((rotate(points, degrees), labels))
    return DomainDatasets(**splits, num_classes=2, input_shape=(2,))
