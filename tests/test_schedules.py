import math

import numpy as np
import pytest
import tensorflow as tf

from dann.schedules import AnnealedLearningRate, ConstantLambda, ConstantLearningRate, LinearWarmup, SigmoidRamp


def _at(schedule, progress):
    return float(schedule(tf.constant(progress, tf.float32)))


@pytest.mark.parametrize("progress", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_sigmoid_ramp_matches_paper_formula(progress):
    expected = 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
    assert _at(SigmoidRamp(gamma=10.0), progress) == pytest.approx(expected, rel=1e-6)


def test_sigmoid_ramp_starts_at_zero_and_approaches_scale():
    ramp = SigmoidRamp(gamma=10.0, scale=0.5)
    assert _at(ramp, 0.0) == 0.0
    assert _at(ramp, 1.0) == pytest.approx(0.5 * (2 / (1 + math.exp(-10)) - 1), rel=1e-6)
    values = [_at(ramp, p) for p in np.linspace(0, 1, 11)]
    assert values == sorted(values)


def test_constant_and_linear_warmup():
    assert _at(ConstantLambda(0.3), 0.7) == pytest.approx(0.3)
    warmup = LinearWarmup(value=2.0, warmup=0.2)
    assert [_at(warmup, p) for p in (0.0, 0.1, 0.2, 0.9)] == pytest.approx([0.0, 1.0, 2.0, 2.0])


@pytest.mark.parametrize("step", [0, 10, 500, 1000])
def test_annealed_learning_rate_matches_paper_formula(step):
    schedule = AnnealedLearningRate(0.01, total_steps=1000, alpha=10.0, beta=0.75)
    expected = 0.01 / (1 + 10.0 * step / 1000) ** 0.75
    assert float(schedule(tf.constant(step))) == pytest.approx(expected, rel=1e-6)


def test_constant_learning_rate_and_config_round_trip():
    assert float(ConstantLearningRate(0.02, total_steps=5)(tf.constant(3))) == pytest.approx(0.02)
    annealed = AnnealedLearningRate(0.01, total_steps=100)
    assert AnnealedLearningRate.from_config(annealed.get_config()).get_config() == annealed.get_config()


@pytest.mark.parametrize(
    "build",
    [
        lambda: SigmoidRamp(gamma=0.0),
        lambda: SigmoidRamp(scale=-1.0),
        lambda: ConstantLambda(-0.1),
        lambda: LinearWarmup(warmup=0.0),
        lambda: AnnealedLearningRate(0.01, total_steps=0),
        lambda: AnnealedLearningRate(-0.01, total_steps=10),
        lambda: ConstantLearningRate(0.0),
    ],
)
def test_out_of_range_arguments_are_refused(build):
    with pytest.raises(ValueError, match="Received"):
        build()
