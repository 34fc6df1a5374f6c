from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from optuna.distributions import FloatDistribution
import pytest

from optuna_metabo._core.model import TrainingData
from optuna_metabo._core.proposal import _fit_subset
from optuna_metabo._core.proposal import ProposalEngine
from optuna_metabo._core.proposal import ranking_log_odds
from optuna_metabo._core.proposal import task_weights
from optuna_metabo._core.search_space import SearchSpace
from optuna_metabo._core.types import EngineSettings
from optuna_metabo._core.types import PriorRows
from optuna_metabo._core.types import ProposalSource


def test_task_weights_favour_the_prior_task_that_ranks_the_target_alike() -> None:
    target_y = np.array([0.0, 1.0, 2.0, 3.0])
    alike = target_y * 2.0 + 5.0
    reversed_ = -target_y
    weights = task_weights(np.stack([alike, reversed_], axis=1), target_y)
    assert abs(weights.sum() - 1.0) < 1e-12
    # Six pairs, all agreeing for one task and all disagreeing for the other: 3**6 to one.
    assert abs(weights[0] / weights[1] - 3.0**6) < 1e-6


def test_task_weights_are_uniform_before_two_target_trials() -> None:
    for n in (0, 1):
        weights = task_weights(np.zeros((n, 3)), np.zeros(n))
        np.testing.assert_allclose(weights, np.full(3, 1 / 3))


def _prior(name: str, optimum: float, rng: np.random.RandomState) -> PriorRows:
    x = rng.rand(40, 1)
    y = (x[:, 0] - optimum) ** 2
    return PriorRows(name=name, x=x, y=y)


def test_prior_design_is_a_portfolio_across_prior_tasks() -> None:
    rng = np.random.RandomState(0)
    priors = [_prior("left", 0.2, rng), _prior("right", 0.8, rng)]
    space = SearchSpace({"x": FloatDistribution(0.0, 1.0)})
    engine = ProposalEngine(EngineSettings())
    empty = np.zeros((0, 1))
    first = engine.propose(space, priors, empty, np.zeros(0), empty, empty, rng)
    assert first.source == ProposalSource.PRIOR_DESIGN
    near_left = abs(first.x[0] - 0.2) < 0.1
    assert near_left or abs(first.x[0] - 0.8) < 0.1
    # The first configuration covers one prior task; the next covers the other one.
    second = engine.propose(space, priors, first.x[None, :], np.array([0.3]), empty, empty, rng)
    assert second.source == ProposalSource.PRIOR_DESIGN
    assert abs(second.x[0] - (0.8 if near_left else 0.2)) < 0.1


def _data(n_target: int, rng: np.random.RandomState) -> TrainingData:
    sizes = [40, 40, n_target]
    return TrainingData(
        x=rng.rand(sum(sizes), 2),
        task=np.repeat(np.arange(3), sizes),
        y=np.concatenate([np.arange(40.0)[::-1], np.arange(40.0), np.arange(float(n_target))]),
        n_tasks=3,
    )


def test_fit_subset_is_fixed_and_shrinks_by_dropping_prior_rows_only() -> None:
    # The hyperparameter fit warm-starts from the previous trial's: its data must not be
    # reshuffled from one trial to the next, or the warm start chases a moving optimum.
    subsets = [_fit_subset(_data(n, np.random.RandomState(n)), 30) for n in (4, 5, 6)]
    again = _fit_subset(_data(5, np.random.RandomState(99)), 30)
    np.testing.assert_array_equal(subsets[1], again)
    for fewer, more in zip(subsets[1:], subsets[:-1]):
        prior_fewer, prior_more = fewer[fewer < 80], more[more < 80]
        assert set(prior_fewer.tolist()) <= set(prior_more.tolist())
    # Every target row is kept, and each prior task keeps its best rows (highest index in
    # task 0, lowest in task 1, as its values are reversed).
    assert set(range(80, 86)) <= set(subsets[2].tolist())
    assert {39, 38, 37} <= set(subsets[0].tolist()) and {40, 41, 42} <= set(subsets[0].tolist())


def test_fit_subset_caps_a_long_target_and_keeps_its_best_rows() -> None:
    # 30 points, 2 prior tasks: the target keeps at most 15 rows, each prior task 7.
    subset = _fit_subset(_data(100, np.random.RandomState(0)), 30)
    target_rows = subset[subset >= 80] - 80
    assert len(target_rows) == 15 and len(subset) == 15 + 2 * 7
    assert set(range(7)) <= set(target_rows.tolist())  # about half are the best (lowest y)
    assert target_rows.max() > 30  # the rest a spread over the whole study
    alone = TrainingData(
        x=np.random.RandomState(1).rand(100, 2),
        task=np.zeros(100, dtype=int),
        y=np.arange(100.0),
        n_tasks=1,
    )
    assert len(_fit_subset(alone, 30)) == 30  # without priors, the whole cap


def test_a_long_target_is_fitted_on_a_subset_and_conditioned_on_all_rows() -> None:
    rng = np.random.RandomState(0)
    priors = [_prior("p", 0.3, rng)]
    target_x = rng.rand(120, 1)
    target_y = (target_x[:, 0] - 0.3) ** 2
    space = SearchSpace({"x": FloatDistribution(0.0, 1.0)})
    engine = ProposalEngine(EngineSettings(max_fit_points=40))
    model, data = engine.fit(priors, target_x, target_y)
    assert len(model.y) == 160  # every row conditions the GP
    proposal = engine.propose(
        space, priors, target_x, target_y, np.zeros((0, 1)), np.zeros((0, 1)), rng
    )
    assert abs(proposal.x[0] - 0.3) < 0.1


def _target_source(prior_function: Callable[[np.ndarray], np.ndarray], n_target: int) -> str:
    rng = np.random.RandomState(0)
    priors = []
    for i in range(3):
        x = rng.rand(40, 1)
        priors.append(PriorRows(f"p{i}", x, prior_function(x[:, 0])))
    target_x = np.linspace(0.02, 0.98, n_target)[:, None]
    target_y = (target_x[:, 0] - 0.7) ** 2
    space = SearchSpace({"x": FloatDistribution(0.0, 1.0)})
    engine = ProposalEngine(EngineSettings())
    proposal = engine.propose(
        space, priors, target_x, target_y, np.zeros((0, 1)), np.zeros((0, 1)), rng
    )
    return proposal.source.value


def test_priors_are_set_aside_when_a_target_only_gp_predicts_the_target_better() -> None:
    assert _target_source(lambda x: (x - 0.7) ** 2, 12) == "model"
    # Wavy, unrelated priors force a short lengthscale on the shared kernel: the smooth
    # target is predicted better alone, so the model phase goes on without them.
    assert _target_source(lambda x: np.sin(8 * x), 12) == "target_model"
    # Before 10 target trials the comparison is not made.
    assert _target_source(lambda x: np.sin(8 * x), 9) == "model"


def test_ranking_log_odds_say_whether_some_prior_ranks_the_target_better_than_chance() -> None:
    target_y = np.array([0.0, 1.0, 2.0, 3.0])
    alike, reversed_ = target_y * 2.0 + 5.0, -target_y
    assert ranking_log_odds(np.stack([alike, reversed_], axis=1), target_y) > 1.0
    assert ranking_log_odds(np.stack([reversed_, reversed_], axis=1), target_y) < -3.0
    assert ranking_log_odds(np.zeros((1, 2)), np.zeros(1)) == 0.0  # no pair: no evidence


def test_the_design_ends_once_the_target_ranks_the_priors_configurations_backwards() -> None:
    """Priors that optimized the negated metric: their best configurations are the target's
    worst, so the target's results rank them backwards and the model takes over."""
    rng = np.random.RandomState(0)
    space = SearchSpace({"x": FloatDistribution(0.0, 1.0)})
    priors = []
    for i in range(3):
        x = rng.rand(40, 1)
        priors.append(PriorRows(f"p{i}", x, (x[:, 0] - 0.2) ** 2))
    sources = {}
    for threshold in (None, 1.0):
        engine = ProposalEngine(EngineSettings(mislead_log_odds=threshold))
        target_x, empty = np.zeros((0, 1)), np.zeros((0, 1))
        for _ in range(4):
            target_y = -((target_x[:, 0] - 0.2) ** 2)  # the negated task
            proposal = engine.propose(space, priors, target_x, target_y, empty, empty, rng)
            target_x = np.concatenate([target_x, proposal.x[None, :]])
        sources[threshold] = proposal.source.value
    assert sources == {None: "prior_design", 1.0: "model"}


def test_held_values_restart_from_a_new_target_best_and_every_few_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A prior that never tuned ``x1`` learns the value it held it at. The fit's second start
    (held values at the target's best) runs at once for a new target best, and otherwise
    only every ``_HELD_RESTART_EVERY`` fits."""
    from optuna_metabo._core import proposal as proposal_module

    starts: list[np.ndarray | None] = []
    restarts = proposal_module._held_value_restarts

    def record(data: TrainingData, state: Any, rank: int, best: np.ndarray | None) -> Any:
        starts.append(None if best is None else best.copy())
        return restarts(data, state, rank, best)

    monkeypatch.setattr(proposal_module, "_held_value_restarts", record)
    rng = np.random.RandomState(0)
    x = np.column_stack([rng.rand(30), np.full(30, np.nan)])
    prior = PriorRows("p", x, (x[:, 0] - 0.3) ** 2, unknown_columns=np.array([1]))
    engine = ProposalEngine(EngineSettings())
    target_x = np.array([[0.35, 0.5], [0.9, 0.1]])
    for step in range(4):
        target_y = (target_x[:, 0] - 0.3) ** 2 + (target_x[:, 1] - 0.5) ** 2
        engine.fit([prior], target_x, target_y)
        # Later points are worse than the best one: it does not change.
        target_x = np.concatenate([target_x, [[0.95 - 0.1 * step, 0.95]]])
    every = proposal_module._HELD_RESTART_EVERY
    assert [s is not None for s in starts] == [step % every == 0 for step in range(4)]
    assert all(np.allclose(s, [0.35, 0.5]) for s in starts if s is not None)
    target_x = np.concatenate([target_x, [[0.31, 0.5]]])  # a new best: one restart from it
    engine.fit([prior], target_x, (target_x[:, 0] - 0.3) ** 2 + (target_x[:, 1] - 0.5) ** 2)
    assert starts[-1] is not None and np.allclose(starts[-1], [0.31, 0.5])
