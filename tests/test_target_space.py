from __future__ import annotations

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import pytest

from optuna_metabo._core.search_space import Condition
from optuna_metabo._core.search_space import SearchSpace
from optuna_metabo._history.target_space import learn_conditions
from optuna_metabo._history.target_space import union_search_space


OPT = CategoricalDistribution(["sgd", "adam"])
NESTEROV = CategoricalDistribution([True, False])
UNIT = FloatDistribution(0.0, 1.0)


def _tree_trials() -> list[dict]:
    """optimizer -> sgd: momentum, nesterov -> True: dampening; adam: beta. ``lr`` always."""
    return [
        {"opt": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "dampening": 0.1},
        {"opt": "sgd", "lr": 0.2, "momentum": 0.5, "nesterov": False},
        {"opt": "adam", "lr": 0.3, "beta": 0.99},
        {"opt": "sgd", "lr": 0.4, "momentum": 0.1, "nesterov": True, "dampening": 0.3},
    ]


def _tree_space() -> dict:
    names = ["momentum", "dampening", "beta", "lr"]
    return {"opt": OPT, "nesterov": NESTEROV, **{n: UNIT for n in names}}


def test_union_keeps_branches_and_latest_ranges_and_drops_conflicts() -> None:
    trials = [
        {"a": FloatDistribution(0, 1), "b": IntDistribution(1, 3), "c": UNIT, "one": UNIT},
        {"a": FloatDistribution(0, 2), "b": IntDistribution(1, 3, log=True), "d": OPT},
        {"one": FloatDistribution(0.5, 0.5)},
    ]
    space = union_search_space(trials)
    assert space["a"] == FloatDistribution(0, 2)  # the latest range
    assert "b" not in space  # its log flag changed: Optuna could not sample it relatively
    assert "c" in space and "d" in space  # present in some trials only: kept
    assert "one" not in space  # single-valued in the latest trial


def test_conditions_are_learned_with_the_closest_parent() -> None:
    conditions = learn_conditions(_tree_trials(), _tree_space())
    assert conditions["momentum"] == Condition("opt", ("sgd",))
    assert conditions["nesterov"] == Condition("opt", ("sgd",))
    assert conditions["beta"] == Condition("opt", ("adam",))
    assert conditions["dampening"] == Condition("nesterov", (True,))
    assert "lr" not in conditions and "opt" not in conditions


def test_a_parameter_added_mid_study_has_no_condition() -> None:
    trials = [{"opt": "sgd", "x": 0.1}, {"opt": "sgd", "x": 0.2, "new": 0.5}]
    assert learn_conditions(trials, {"opt": OPT, "x": UNIT, "new": UNIT}) == {}


def test_inactive_mask_follows_nested_conditions() -> None:
    distributions = _tree_space()
    space = SearchSpace(distributions, learn_conditions(_tree_trials(), distributions))
    rows = []
    for params in _tree_trials():
        row = space.encode(params)
        assert row is not None
        rows.append(np.nan_to_num(row, nan=0.5))
    mask = space.inactive_mask(np.array(rows))
    for params, row_mask in zip(_tree_trials(), mask):
        for name in distributions:
            inactive = bool(row_mask[space.columns_of(name)].all())
            assert inactive == (name not in params), (params, name)


def test_fixed_parameters_are_pinned_and_never_suggested() -> None:
    space = SearchSpace(
        {"x": UNIT, "n": IntDistribution(1, 4)},
        fixed={"momentum": (FloatDistribution(0.0, 1.0), 0.9)},
    )
    pinned = space.columns_of("momentum")
    assert list(space.fixed_columns) == list(pinned)
    rows = space.sample_sobol(16, np.random.RandomState(0))
    assert np.allclose(rows[:, pinned], 0.9)
    assert np.allclose(space.snap(np.zeros((2, space.dim)))[:, pinned], 0.9)
    assert pinned[0] not in space.continuous_columns
    assert all(pinned[0] not in cols for cols, _ in space.discrete_choices())
    assert set(space.decode(rows[0])) == {"x", "n"}
    # A target trial without the parameter sits at the fixed value; a prior at its own.
    target = space.encode({**space.fixed_values, "x": 0.5, "n": 2})
    prior = space.encode({"x": 0.5, "n": 2, "momentum": 0.1})
    assert target is not None and prior is not None
    assert target[pinned] == pytest.approx(0.9) and prior[pinned] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="outside"):
        SearchSpace({"x": UNIT}, fixed={"m": (FloatDistribution(0.0, 1.0), 5.0)})
