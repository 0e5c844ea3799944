"""Schedules of the adaptation factor lambda and of the learning rate.

Both follow the paper (Ganin et al., JMLR 2016, section 5.2.2), where
`p = step / total_steps` is the training progress, rising linearly from 0 to 1.

Adaptation schedules map progress `p` (a float32 scalar tensor) to lambda, the
strength of the gradient reversal. Learning-rate schedules are
`keras.optimizers.schedules.LearningRateSchedule`s of the optimizer's step, so that
they resume with the optimizer's own iteration counter.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class SigmoidRamp:
    """The paper's adaptation factor: `lambda_p = scale * (2 / (1 + exp(-gamma * p)) - 1)`.

    Rises from 0 at `p = 0` towards `scale`, suppressing the noisy domain signal
    early in training.

    Args:
        gamma: steepness, > 0 (paper: 10).
        scale: the value approached at the end of training, >= 0 (paper: 1).
    """

    def __init__(self, gamma: float = 10.0, scale: float = 1.0):
        if gamma <= 0:
            raise ValueError(f"SigmoidRamp: gamma must be > 0. Received: gamma={gamma}")
        _check_non_negative("SigmoidRamp", scale=scale)
        self.gamma = gamma
        self.scale = scale

    def __call__(self, progress: tf.Tensor) -> tf.Tensor:
        return self.scale * (2.0 / (1.0 + tf.exp(-self.gamma * progress)) - 1.0)


class ConstantLambda:
    """A fixed adaptation factor. `value=0` trains without adaptation (source only).

    Args:
        value: lambda, >= 0.
    """

    def __init__(self, value: float = 1.0):
        _check_non_negative("ConstantLambda", value=value)
        self.value = value

    def __call__(self, progress: tf.Tensor) -> tf.Tensor:
        return tf.fill(tf.shape(progress), tf.constant(self.value, progress.dtype))


class LinearWarmup:
    """Lambda rising linearly from 0 to `value` over the first `warmup` of training, then flat.

    Args:
        value: the final lambda, >= 0.
        warmup: the fraction of training over which lambda rises, in (0, 1].
    """

    def __init__(self, value: float = 1.0, warmup: float = 0.1):
        _check_non_negative("LinearWarmup", value=value)
        if not 0 < warmup <= 1:
            raise ValueError(f"LinearWarmup: warmup must be in (0, 1]. Received: warmup={warmup}")
        self.value = value
        self.warmup = warmup

    def __call__(self, progress: tf.Tensor) -> tf.Tensor:
        return self.value * tf.minimum(progress / self.warmup, 1.0)


@keras.saving.register_keras_serializable(package="dann")
class AnnealedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The paper's annealing: `mu_p = initial_learning_rate / (1 + alpha * p) ** beta`.

    Args:
        initial_learning_rate: `mu_0`, > 0 (paper: 0.01).
        total_steps: the number of training steps, which sets `p = step / total_steps`.
        alpha: > 0 (paper: 10).
        beta: > 0 (paper: 0.75).
    """

    def __init__(self, initial_learning_rate: float, total_steps: int, alpha: float = 10.0, beta: float = 0.75):
        _check_positive(
            "AnnealedLearningRate",
            initial_learning_rate=initial_learning_rate,
            total_steps=total_steps,
            alpha=alpha,
            beta=beta,
        )
        self.initial_learning_rate = initial_learning_rate
        self.total_steps = total_steps
        self.alpha = alpha
        self.beta = beta

    def __call__(self, step):
        progress = tf.cast(step, tf.float32) / float(self.total_steps)
        return self.initial_learning_rate / (1.0 + self.alpha * progress) ** self.beta

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "total_steps": self.total_steps,
            "alpha": self.alpha,
            "beta": self.beta,
        }


@keras.saving.register_keras_serializable(package="dann")
class ConstantLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A fixed learning rate, with the same constructor as `AnnealedLearningRate`.

    Args:
        initial_learning_rate: the rate, > 0.
        total_steps: unused; accepted so that all schedules build alike.
    """

    def __init__(self, initial_learning_rate: float, total_steps: int | None = None):
        _check_positive("ConstantLearningRate", initial_learning_rate=initial_learning_rate)
        self.initial_learning_rate = initial_learning_rate
        self.total_steps = total_steps

    def __call__(self, step):
        return tf.constant(self.initial_learning_rate, tf.float32)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "total_steps": self.total_steps}


def _check_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{owner}: {name} must be > 0. Received: {name}={value}")


def _check_non_negative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{owner}: {name} must be >= 0. Received: {name}={value}")
