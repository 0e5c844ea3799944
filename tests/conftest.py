"""Shared fixtures: two logical CPU devices (for tf.distribute tests) and tiny composed configs."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf

# Logical devices must be configured before TensorFlow initialises its runtime.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from dann.config import compose_config  # noqa: E402
from tests_support import TINY_OVERRIDES  # noqa: E402


@pytest.fixture
def tiny_moons_cfg():
    """The moons experiment, shrunk to a few steps."""
    return compose_config(["+experiment=moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES])
