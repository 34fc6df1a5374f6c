from __future__ import annotations

import numpy as np
from scipy.stats import norm
import torch

from optuna_metabo._acquisition import log_h
from optuna_metabo._acquisition import LogExpectedImprovement
from optuna_metabo._acquisition import PortfolioCoverage


class _FixedPosterior:
    def __init__(self, mean: np.ndarray, var: np.ndarray) -> None:
        self.mean, self.var = torch.as_tensor(mean), torch.as_tensor(var)

    def posterior(self, x: torch.Tensor, task_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean + task_index, self.var


def test_log_h_matches_closed_form_and_is_finite_far_in_the_tail() -> None:
    z = np.linspace(-5, 5, 41)
    expected = np.log(norm.pdf(z) + z * norm.cdf(z))
    np.testing.assert_allclose(log_h(torch.as_tensor(z)).numpy(), expected, rtol=1e-8)
    tail = log_h(torch.tensor([-40.0, -1e3], dtype=torch.float64))
    assert torch.isfinite(tail).all()
    assert float(tail[0]) > float(tail[1])


def test_log_ei_equals_log_of_expected_improvement() -> None:
    mean, var = np.array([0.0, 1.0, -1.0]), np.array([1.0, 0.25, 4.0])
    acqf = LogExpectedImprovement(_FixedPosterior(mean, var), 0, best_value=0.5)
    sigma = np.sqrt(var)
    z = (0.5 - mean) / sigma
    ei = sigma * (norm.pdf(z) + z * norm.cdf(z))
    np.testing.assert_allclose(acqf(torch.zeros(3, 1)).numpy(), np.log(ei), rtol=1e-8)


def test_log_ei_has_gradients_deep_in_the_tail() -> None:
    mean = torch.tensor([30.0], dtype=torch.float64, requires_grad=True)

    class _Model:
        def posterior(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
            return mean, torch.ones(1, dtype=torch.float64)

    LogExpectedImprovement(_Model(), 0, 0.0)(torch.zeros(1, 1)).sum().backward()
    assert mean.grad is not None and float(mean.grad) < 0


class _TableModel:
    """Posterior mean ``table[x, task]`` for integer points ``x`` of shape ``(m, 1)``."""

    def __init__(self, table: list[list[float]]) -> None:
        self.table = torch.tensor(table, dtype=torch.float64)

    def posterior(self, x: torch.Tensor, task_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.table[x[:, 0].long(), task_index]
        return mean, torch.ones_like(mean)


# Point 0 is best on task 0 only, point 1 on task 1 only, point 2 is fair on both.
_SPECIALISTS = _TableModel([[0.0, 2.0], [2.0, 0.0], [0.9, 0.9]])
_POINTS = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)


def _coverage(weights: list[float], covered: list[float]) -> PortfolioCoverage:
    def tensor(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64)

    return PortfolioCoverage(
        _SPECIALISTS, [0, 1], tensor(weights), tensor([0.0, 0.0]), tensor(covered)
    )


def test_empty_portfolio_ranks_points_by_weighted_mean_regret() -> None:
    values = _coverage([0.5, 0.5], [float("inf")] * 2)(_POINTS)
    np.testing.assert_allclose(values.numpy(), [-1.0, -1.0, -0.9])
    assert int(values.argmax()) == 2


def test_portfolio_prefers_the_point_that_covers_what_is_missing() -> None:
    # Point 0 was tried: task 0 is covered, task 1 still has regret 2.
    values = _coverage([0.5, 0.5], [0.0, 2.0])(_POINTS)
    np.testing.assert_allclose(values.numpy(), [-1.0, 0.0, -0.45])
    assert int(values.argmax()) == 1


def test_task_weights_steer_the_portfolio() -> None:
    values = _coverage([1.0, 0.0], [float("inf")] * 2)(_POINTS)
    assert int(values.argmax()) == 0
