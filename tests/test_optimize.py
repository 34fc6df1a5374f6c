from __future__ import annotations

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import torch

from optuna_metabo._core.optimize import _search_discrete
from optuna_metabo._core.optimize import best_candidate
from optuna_metabo._core.optimize import optimize_acquisition
from optuna_metabo._core.search_space import SearchSpace


def test_finds_a_continuous_optimum_between_sobol_points() -> None:
    space = SearchSpace({"a": FloatDistribution(0, 1), "b": FloatDistribution(0, 1)})
    optimum = torch.tensor([0.3141, 0.7182], dtype=torch.float64)

    def acqf(x: torch.Tensor) -> torch.Tensor:
        return -((x - optimum) ** 2).sum(dim=1)

    x, value = optimize_acquisition(acqf, space, np.zeros((0, 2)), np.random.RandomState(0), 64)
    np.testing.assert_allclose(x, optimum.numpy(), atol=1e-4)
    assert value > -1e-7


def test_mixed_space_optimum_is_feasible_and_found() -> None:
    space = SearchSpace(
        {
            "n": IntDistribution(1, 9),
            "opt": CategoricalDistribution(["sgd", "adam", "rmsprop"]),
            "x": FloatDistribution(-1, 1),
        }
    )
    target = space.encode({"n": 7, "opt": "rmsprop", "x": 0.25})
    assert target is not None
    weights = torch.ones(space.dim, dtype=torch.float64)

    def acqf(x: torch.Tensor) -> torch.Tensor:
        return -(weights * (x - torch.as_tensor(target)) ** 2).sum(dim=1)

    x, _ = optimize_acquisition(acqf, space, np.zeros((0, space.dim)), np.random.RandomState(1))
    params = space.decode(x)
    assert params["n"] == 7 and params["opt"] == "rmsprop"
    assert abs(params["x"] - 0.25) < 1e-3


def test_given_starts_are_used() -> None:
    space = SearchSpace({"n": IntDistribution(0, 1000)})
    start = space.encode({"n": 777})
    assert start is not None

    def acqf(x: torch.Tensor) -> torch.Tensor:
        # A needle only the provided start can find.
        return torch.where((x[:, 0] - float(start[0])).abs() < 1e-9, 1.0, 0.0).double()

    x, value = optimize_acquisition(acqf, space, start[None, :], np.random.RandomState(0), 16)
    assert space.decode(x)["n"] == 777 and value == 1.0
    best, _ = best_candidate(acqf, np.array([[0.1], start]))
    assert best[0] == start[0]


def test_discrete_search_picks_each_rows_own_best_option() -> None:
    space = SearchSpace({"n": IntDistribution(0, 4), "x": FloatDistribution(0, 1)})
    n_column = 0 if space.continuous_columns[0] == 1 else 1
    x_column = 1 - n_column

    def acqf(x: torch.Tensor) -> torch.Tensor:
        # The best ``n`` depends on the row's continuous value: n == round(4 * x).
        return -((x[:, n_column] - x[:, x_column]) ** 2)

    rows = np.zeros((3, 2))
    rows[:, x_column] = [0.0, 0.5, 1.0]
    searched = _search_discrete(acqf, space.snap(rows), space)
    assert [space.decode(row)["n"] for row in searched] == [0, 2, 4]
    np.testing.assert_array_equal(searched[:, x_column], rows[:, x_column])


def test_excluded_points_are_not_returned_unless_nothing_else_is_left() -> None:
    space = SearchSpace({"n": IntDistribution(0, 3)})
    grid = space.snap(np.array([[0.0], [0.3], [0.6], [1.0]]))

    def acqf(x: torch.Tensor) -> torch.Tensor:
        return -x[:, 0]  # n == 0 is best, then 1, 2, 3.

    rng = np.random.RandomState(0)
    x, _ = optimize_acquisition(acqf, space, grid, rng, 16, exclude=grid[:1])
    assert space.decode(x)["n"] == 1
    x, _ = optimize_acquisition(acqf, space, grid, rng, 16, exclude=grid[:3])
    assert space.decode(x)["n"] == 3
    x, _ = optimize_acquisition(acqf, space, grid, rng, 16, exclude=grid)
    assert space.decode(x)["n"] == 0
