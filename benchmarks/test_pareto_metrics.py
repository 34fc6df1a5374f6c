"""The benchmarks' own Pareto metrics (``benchmarks.pareto``), independent of the sampler's."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.pareto import hypervolume
from benchmarks.pareto import nondominated_mask


def test_nondominated_mask_keeps_the_first_of_equal_rows() -> None:
    y = np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0], [0.5, 3.0]])
    np.testing.assert_array_equal(nondominated_mask(y), [True, True, False, False, True])


def test_hypervolume_of_a_staircase_in_two_objectives() -> None:
    front = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(front, np.array([4.0, 4.0])) == pytest.approx(6.0)
    assert hypervolume(np.array([[5.0, 0.0]]), np.array([4.0, 4.0])) == 0.0


@pytest.mark.parametrize("m", [3, 4])
def test_hypervolume_matches_a_monte_carlo_estimate(m: int) -> None:
    rng = np.random.RandomState(m)
    front = rng.rand(12, m)
    front = front[nondominated_mask(front)]
    reference = np.full(m, 1.2)
    samples = rng.rand(200_000, m) * 1.2
    dominated = (front[None, :, :] <= samples[:, None, :]).all(axis=2).any(axis=1)
    estimate = dominated.mean() * 1.2**m
    assert hypervolume(front, reference) == pytest.approx(estimate, abs=0.01 * 1.2**m)
