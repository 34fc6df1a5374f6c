from __future__ import annotations

import math

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import pytest

from optuna_metabo._core.search_space import SearchSpace


@st.composite
def distributions(draw: st.DrawFn) -> BaseDistribution:
    kind = draw(st.sampled_from(["float", "log", "step", "int", "intlog", "intstep", "cat"]))
    if kind == "cat":
        n = draw(st.integers(1, 5))
        return CategoricalDistribution(draw(st.permutations(["a", 1, 2.5, None, True][:n])))
    if kind in ("int", "intlog", "intstep"):
        low = draw(st.integers(1, 50))
        high = low + draw(st.integers(0, 100))
        if kind == "intstep":
            step = draw(st.integers(1, 7))
            return IntDistribution(low, low + step * ((high - low) // step), step=step)
        return IntDistribution(low, high, log=kind == "intlog")
    low = draw(st.floats(1e-4, 10.0))
    high = low + draw(st.floats(1e-3, 100.0))
    if kind == "step":
        step = draw(st.sampled_from([0.1, 0.25, 0.5, 1.0]))
        n = max(1, int((high - low) / step))
        return FloatDistribution(low, low + n * step, step=step)
    return FloatDistribution(low, high, log=kind == "log")


spaces = st.dictionaries(st.sampled_from(list("abcdefg")), distributions(), min_size=1)


def _inside(dist: BaseDistribution, value: object) -> bool:
    return dist._contains(dist.to_internal_repr(value))


@settings(max_examples=200, deadline=None)
@given(space=spaces, data=st.data())
def test_decode_any_row_is_inside_every_distribution(space: dict, data: st.DataObject) -> None:
    encoder = SearchSpace(space)
    row = np.array(
        data.draw(st.lists(st.floats(-1, 2), min_size=encoder.dim, max_size=encoder.dim))
    )
    params = encoder.decode(row)
    assert set(params) == set(space)
    for name, dist in space.items():
        assert _inside(dist, params[name]), (name, dist, params[name])
        if isinstance(dist, IntDistribution):
            assert isinstance(params[name], int)


@settings(max_examples=200, deadline=None)
@given(space=spaces, seed=st.integers(0, 2**16))
def test_round_trip_of_feasible_values(space: dict, seed: int) -> None:
    encoder = SearchSpace(space)
    rows = encoder.sample_sobol(8, np.random.RandomState(seed))
    assert np.all((rows >= 0) & (rows <= 1))
    for row in rows:
        params = encoder.decode(row)
        encoded = encoder.encode(params)
        assert encoded is not None
        again = encoder.decode(encoded)
        for name, dist in space.items():
            if isinstance(dist, FloatDistribution) and dist.step is None:
                assert math.isclose(again[name], params[name], rel_tol=1e-9, abs_tol=1e-12)
            else:
                assert again[name] == params[name]


def test_log_parameter_is_normalized_in_log_space() -> None:
    space = SearchSpace({"lr": FloatDistribution(1e-4, 1e-0, log=True)})
    assert space.encode({"lr": 1e-2}) == pytest.approx([0.5])


def test_integer_grid_is_widened_by_half_a_step() -> None:
    space = SearchSpace({"n": IntDistribution(0, 3)})
    # Four grid values own equal quarters of [0, 1].
    assert space.encode({"n": 0}) == pytest.approx([0.125])
    assert space.encode({"n": 3}) == pytest.approx([0.875])
    assert space.decode(np.array([0.24])) == {"n": 0}
    assert space.decode(np.array([0.26])) == {"n": 1}


def test_categorical_matched_by_value_not_position() -> None:
    target = SearchSpace({"opt": CategoricalDistribution(["sgd", "adam"])})
    assert target.encode({"opt": "adam"}) == pytest.approx([0.0, 1.0])
    assert target.encode({"opt": "rmsprop"}) is None


def test_values_far_outside_the_range_are_rejected_and_near_ones_kept() -> None:
    space = SearchSpace({"x": FloatDistribution(0.0, 1.0)})
    assert space.encode({"x": 1.1}) == pytest.approx([1.1])
    assert space.encode({"x": 2.0}) is None
    missing = space.encode({})
    assert missing is not None and np.isnan(missing).all()  # absent, not invalid


def test_discrete_choices_cover_grid_and_categories() -> None:
    space = SearchSpace(
        {"c": CategoricalDistribution([1, 2, 3]), "s": FloatDistribution(0, 1, step=0.5)}
    )
    choices = space.discrete_choices()
    sizes = sorted(len(options) for _, options in choices)
    assert sizes == [3, 3]
    assert len(space.continuous_columns) == 0
