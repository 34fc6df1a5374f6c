from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
import torch

from optuna_metabo._acquisition import log_h
from optuna_metabo._acquisition import LogExpectedImprovement
from optuna_metabo._acquisition import NegativeMeanAcrossTasks


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


def test_mean_across_tasks_averages_prior_tasks() -> None:
    acqf = NegativeMeanAcrossTasks(_FixedPosterior(np.zeros(2), np.ones(2)), [0, 1, 2])
    assert acqf(torch.zeros(2, 1)).numpy() == pytest.approx([-1.0, -1.0])
