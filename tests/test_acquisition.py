from __future__ import annotations

import numpy as np
from scipy.stats import norm
import torch

from optuna_metabo._core.acquisition import log_h
from optuna_metabo._core.acquisition import LogExpectedImprovement
from optuna_metabo._core.acquisition import PortfolioCoverage


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


class _IndependentObjectives:
    """A model per objective with fixed means and variances ``(m,)``."""

    def __init__(self, mean: np.ndarray, var: np.ndarray) -> None:
        self.mean, self.var = torch.as_tensor(mean), torch.as_tensor(var)

    def posterior(self, x: torch.Tensor, task_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean, self.var


def _monte_carlo_ehvi(
    front: np.ndarray, reference: np.ndarray, mean: np.ndarray, std: np.ndarray, n: int = 20_000
) -> np.ndarray:
    from optuna_metabo._core.pareto import hypervolume

    rng = np.random.RandomState(0)
    base = hypervolume(front, reference)
    result = []
    for mu, sigma in zip(mean, std):
        samples = mu + sigma * rng.randn(n, len(reference))
        gains = [hypervolume(np.vstack([front, s[None]]), reference) - base for s in samples]
        result.append(np.mean(gains))
    return np.array(result)


def test_log_ehvi_matches_a_monte_carlo_estimate_in_two_and_three_objectives() -> None:
    from optuna_metabo._core.acquisition import LogExpectedHypervolumeImprovement
    from optuna_metabo._core.pareto import nondominated_boxes

    rng = np.random.RandomState(3)
    for m in (2, 3):
        front = np.array([[0.2, 0.8, 0.5], [0.5, 0.4, 0.6], [0.8, 0.1, 0.3]])[:, :m]
        reference = np.full(m, 1.2)
        mean = rng.uniform(0.0, 1.0, size=(3, m))
        std = rng.uniform(0.05, 0.4, size=(3, m))
        lower, upper = nondominated_boxes(front, reference)
        models = [_IndependentObjectives(mean[:, k], std[:, k] ** 2) for k in range(m)]
        acqf = LogExpectedHypervolumeImprovement(
            models, [0] * m, torch.as_tensor(lower), torch.as_tensor(upper)
        )
        closed_form = np.exp(acqf(torch.zeros(3, 1, dtype=torch.float64)).numpy())
        expected = _monte_carlo_ehvi(front, reference, mean, std)
        np.testing.assert_allclose(closed_form, expected, rtol=0.05, atol=1e-4)


def test_log_ehvi_is_finite_with_gradients_far_behind_the_front() -> None:
    from optuna_metabo._core.acquisition import LogExpectedHypervolumeImprovement
    from optuna_metabo._core.pareto import nondominated_boxes

    lower, upper = nondominated_boxes(np.array([[0.0, 0.0]]), np.array([1.0, 1.0]))
    mean = torch.tensor([30.0], dtype=torch.float64, requires_grad=True)
    model = _IndependentObjectives(np.zeros(1), np.full(1, 0.01))
    model.mean = mean
    acqf = LogExpectedHypervolumeImprovement(
        [model, _IndependentObjectives(np.zeros(1), np.full(1, 0.01))],
        [0, 0],
        torch.as_tensor(lower),
        torch.as_tensor(upper),
    )
    value = acqf(torch.zeros(1, 1, dtype=torch.float64))
    value.sum().backward()
    assert torch.isfinite(value).all() and float(mean.grad) < 0  # type: ignore[arg-type]


def test_probability_of_feasibility_and_feasibility_first() -> None:
    from optuna_metabo._core.acquisition import ConstrainedAcquisition
    from optuna_metabo._core.acquisition import LogProbabilityOfFeasibility

    mean, var = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 4.0, 0.25])
    pof = LogProbabilityOfFeasibility(_FixedPosterior(mean, var), 0, threshold=0.5)
    expected = norm.logcdf((0.5 - mean) / np.sqrt(var))
    x = torch.zeros(3, 1, dtype=torch.float64)
    np.testing.assert_allclose(pof(x).numpy(), expected, rtol=1e-10)
    # Without a feasible point there is no objective part: log PoF alone, summed.
    np.testing.assert_allclose(ConstrainedAcquisition(None, [pof, pof])(x).numpy(), 2 * expected)
    ei = LogExpectedImprovement(_FixedPosterior(mean, var), 0, best_value=0.0)
    np.testing.assert_allclose(
        ConstrainedAcquisition(ei, [pof])(x).numpy(), ei(x).numpy() + expected
    )
