"""The moons experiment: DANN beats source-only training on the rotated target."""

import numpy as np
import pytest

from dann.config import compose_config
from dann.data.moons import moons_domains, rotate
from dann.experiment import train


def test_moons_are_deterministic_and_rotated():
    first, second = moons_domains(seed=3), moons_domains(seed=3)
    (x1, y1), (x2, y2) = (next(iter(d.source_train.batch(1000))) for d in (first, second))
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    assert x1.shape == (300, 2) and set(np.unique(y1.numpy())) == {0, 1}
    np.testing.assert_allclose(rotate(rotate(x1.numpy(), 35.0), -35.0), x1.numpy(), atol=1e-5)
    other = next(iter(moons_domains(seed=4).source_train.batch(1000)))[0]
    assert not np.array_equal(other.numpy(), x1.numpy())


@pytest.mark.slow
def test_dann_beats_source_only_on_target(tmp_path):
    target_accuracy = {}
    for experiment in ("moons", "moons_source_only"):
        # One evaluation, at the end: the accuracies compared are the final ones.
        overrides = ["trainer.plots=false", "trainer.eval_every=2000", "trainer.steps_per_call=200"]
        runs = [
            train(compose_config([f"+experiment={experiment}", f"seed={seed}", *overrides]), tmp_path / f"{experiment}{seed}")
            for seed in range(3)
        ]
        target_accuracy[experiment] = np.mean([run["target_test_accuracy"] for run in runs])
        assert np.mean([run["source_test_accuracy"] for run in runs]) > 0.95
    assert target_accuracy["moons"] > target_accuracy["moons_source_only"] + 0.05, target_accuracy
