from __future__ import annotations

import numpy as np
from optuna.distributions import FloatDistribution

from optuna_metabo._priors import EncodedPrior
from optuna_metabo._proposal import EngineSettings
from optuna_metabo._proposal import ProposalEngine
from optuna_metabo._proposal import task_weights
from optuna_metabo._search_space import SearchSpace


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


def _prior(name: str, optimum: float, rng: np.random.RandomState) -> EncodedPrior:
    x = rng.rand(40, 1)
    y = (x[:, 0] - optimum) ** 2
    return EncodedPrior(name=name, x=x, y=y, n_available=40, n_total=40)


def test_prior_design_is_a_portfolio_across_prior_tasks() -> None:
    rng = np.random.RandomState(0)
    priors = [_prior("left", 0.2, rng), _prior("right", 0.8, rng)]
    space = SearchSpace({"x": FloatDistribution(0.0, 1.0)})
    engine = ProposalEngine(EngineSettings())
    empty = np.zeros((0, 1))
    first = engine.propose(space, priors, empty, np.zeros(0), empty, rng)
    assert first.source == "prior_design"
    near_left = abs(first.x[0] - 0.2) < 0.1
    assert near_left or abs(first.x[0] - 0.8) < 0.1
    # The first configuration covers one prior task; the next covers the other one.
    second = engine.propose(space, priors, first.x[None, :], np.array([0.3]), empty, rng)
    assert second.source == "prior_design"
    assert abs(second.x[0] - (0.8 if near_left else 0.2)) < 0.1
