from __future__ import annotations

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np

from optuna_metabo._core.pareto import hypervolume
from optuna_metabo._core.pareto import nondominated_boxes
from optuna_metabo._core.pareto import nondominated_mask


def test_nondominated_mask_keeps_the_front_and_one_of_equal_points() -> None:
    y = np.array([[1.0, 3.0], [2.0, 2.0], [2.0, 2.0], [3.0, 3.0], [3.0, 1.0], [1.0, 4.0]])
    np.testing.assert_array_equal(nondominated_mask(y), [True, True, False, False, True, False])


def test_hypervolume_of_a_two_objective_staircase() -> None:
    front = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    # Reference (4, 4): columns 1-2, 2-3 and 3-4 with heights 1, 2 and 3.
    assert hypervolume(front, np.array([4.0, 4.0])) == 6.0
    # Points beyond the reference and dominated points add nothing.
    more = np.vstack([front, [[5.0, 0.0], [3.5, 3.5]]])
    assert hypervolume(more, np.array([4.0, 4.0])) == 6.0
    assert hypervolume(np.zeros((0, 2)), np.array([1.0, 1.0])) == 0.0


def test_hypervolume_in_one_objective_is_the_distance_to_the_reference() -> None:
    assert hypervolume(np.array([[2.0], [1.5]]), np.array([4.0])) == 2.5


def _monte_carlo_volume(front: np.ndarray, reference: np.ndarray, n: int = 200_000) -> float:
    low = front.min(axis=0)
    samples = low + np.random.RandomState(0).rand(n, len(reference)) * (reference - low)
    dominated = (front[None, :, :] <= samples[:, None, :]).all(axis=2).any(axis=1)
    return float(dominated.mean() * np.prod(reference - low))


def test_hypervolume_in_three_and_four_objectives_matches_monte_carlo() -> None:
    rng = np.random.RandomState(1)
    for m in (3, 4):
        y = rng.rand(15, m)
        reference = np.full(m, 1.1)
        expected = _monte_carlo_volume(y[nondominated_mask(y)], reference)
        assert abs(hypervolume(y, reference) - expected) < 0.01


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 4),
    st.lists(st.floats(0.0, 1.0), min_size=4, max_size=40),
)
def test_boxes_are_disjoint_and_fill_the_region_the_front_does_not_dominate(
    m: int, flat: list[float]
) -> None:
    y = np.array(flat[: len(flat) // m * m]).reshape(-1, m)
    front = y[nondominated_mask(y)]
    reference = np.full(m, 1.5)
    lower, upper = nondominated_boxes(front, reference)
    assert (upper > lower).all() and (upper <= reference).all()
    # No front point lies strictly inside a box: the boxes are not dominated.
    inside = ((front[:, None, :] > lower[None]) & (front[:, None, :] < upper[None])).all(axis=2)
    assert not inside.any()
    # Clipped at the origin, box volumes and the hypervolume add up to the whole box.
    volumes = np.prod(upper - np.maximum(lower, 0.0), axis=1)
    np.testing.assert_allclose(volumes.sum() + hypervolume(front, reference), 1.5**m)
    # Disjoint: a random point lies in at most one box.
    samples = np.random.RandomState(0).rand(2000, m) * 1.5
    hits = ((samples[:, None, :] >= lower[None]) & (samples[:, None, :] < upper[None])).all(2)
    assert hits.sum(axis=1).max() <= 1


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(0, 14),
    st.lists(st.floats(0.0, 1.0), min_size=80, max_size=80),
)
def test_hypervolume_improvement_equals_the_difference_of_hypervolumes(
    m: int, n_base: int, flat: list[float]
) -> None:
    from optuna_metabo._core.pareto import hypervolume_improvement

    values = np.array(flat[: (n_base + 4) * m]).reshape(-1, m)
    base, points = values[:n_base], values[n_base:]
    reference = np.full(m, 1.2)
    expected = [
        hypervolume(np.vstack([base, p]), reference) - hypervolume(base, reference) for p in points
    ]
    np.testing.assert_allclose(
        hypervolume_improvement(points, base, reference), expected, atol=1e-12
    )
