"""The proxy A-distance: 0 for one distribution, 2 for separable ones, with either classifier."""

import numpy as np
import pytest

from dann.metrics import proxy_a_distance


@pytest.mark.parametrize("classifier", ["ridge", "linear_svm"])
def test_proxy_a_distance_tells_apart_only_what_differs(classifier):
    rng = np.random.default_rng(0)
    source, same, shifted = rng.normal(size=(3, 600, 20))
    assert proxy_a_distance(source, same, classifier=classifier) < 0.3
    assert proxy_a_distance(source, shifted + 1.0, classifier=classifier) > 1.8


def test_proxy_a_distance_names_its_classifiers():
    with pytest.raises(ValueError, match="classifier must be 'ridge' or 'linear_svm'"):
        proxy_a_distance(np.zeros((4, 2)), np.ones((4, 2)), classifier="svm")
