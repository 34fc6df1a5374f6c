"""Acquisition functions. Each one asks the model only for a posterior.

Conventions: values are standardized and lower is better; acquisition values are to be
maximized; inputs are tensors of shape ``(m, d)`` and outputs of shape ``(m,)``.
"""

from __future__ import annotations

from collections.abc import Callable
import math
from typing import Protocol

import torch


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LOG_SQRT_PI_OVER_2 = 0.5 * math.log(math.pi / 2)


class PosteriorModel(Protocol):
    """What an acquisition function needs from a model."""

    def posterior(self, x: torch.Tensor, task_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of shape ``(m,)`` at ``x`` of shape ``(m, d)``."""


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate on both ends."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_h(z: torch.Tensor) -> torch.Tensor:
    """``log(phi(z) + z * Phi(z))``, stable for very negative ``z`` (Ament et al., 2023)."""
    upper = z > -1
    z_upper = torch.where(upper, z, torch.zeros_like(z))
    z_lower = torch.where(upper, -torch.ones_like(z), z)
    normal = torch.distributions.Normal(
        torch.zeros((), dtype=z.dtype, device=z.device),
        torch.ones((), dtype=z.dtype, device=z.device),
    )
    value_upper = torch.log(torch.exp(normal.log_prob(z_upper)) + z_upper * normal.cdf(z_upper))
    erfcx_term = torch.log(torch.special.erfcx(-z_lower / math.sqrt(2)) * z_lower.abs())
    value_lower = -0.5 * z_lower**2 - _LOG_SQRT_2PI + _log1mexp(erfcx_term + _LOG_SQRT_PI_OVER_2)
    return torch.where(upper, value_upper, value_lower)


class LogExpectedImprovement:
    """Log expected improvement over ``best_value`` on one task (minimization).

    Args:
        model: Anything with ``posterior(x, task_index)``.
        task_index: The task whose improvement counts (the target).
        best_value: The incumbent, in the model's standardized units.
    """

    def __init__(self, model: PosteriorModel, task_index: int, best_value: float) -> None:
        self.model = model
        self.task_index = task_index
        self.best_value = best_value

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean, variance = self.model.posterior(x, self.task_index)  # (m,), (m,)
        std = torch.sqrt(variance)
        z = (self.best_value - mean) / std
        return log_h(z) + torch.log(std)


class PortfolioCoverage:
    """How much a point would add to a portfolio of configurations across the prior tasks.

    Each prior task ``t`` counts with weight ``w_t`` the regret ``min(c_t, mu_t(x) - b_t)`` of
    the portfolio after adding ``x``, where ``mu_t`` is the posterior mean, ``b_t`` the task's
    best value and ``c_t`` the regret already covered by the points tried on the target. The
    value is minus the weighted regret. With no point tried (``c_t = inf``) and equal weights it
    ranks points by their mean across tasks; later it prefers points that are good where the
    earlier ones were not (a greedy portfolio, Feurer et al., 2018).

    Args:
        model: Anything with ``posterior(x, task_index)``.
        task_indices: The prior tasks, ``(P,)``.
        weights: Their weights ``(P,)``, summing to one.
        best: Their best values ``(P,)`` in standardized units.
        covered: Regret already covered on each task ``(P,)``; ``inf`` where nothing is.
    """

    def __init__(
        self,
        model: PosteriorModel,
        task_indices: list[int],
        weights: torch.Tensor,
        best: torch.Tensor,
        covered: torch.Tensor,
    ) -> None:
        self.model = model
        self.task_indices = task_indices
        self.weights = weights
        self.best = best
        self.covered = covered

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        means = torch.stack([self.model.posterior(x, t)[0] for t in self.task_indices])  # (P, m)
        regret = torch.minimum(self.covered[:, None], means - self.best[:, None])  # (P, m)
        return -(self.weights[:, None] * regret).sum(dim=0)


def _log_expected_shortfall(
    mean: torch.Tensor, std: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
) -> torch.Tensor:
    """``log E[(u - max(l, Y))^+]`` for ``Y ~ N(mean, std^2)`` and ``l < u``, by broadcasting.

    The expectation is ``std * (h(z_u) - h(z_l))`` with ``h(z) = phi(z) + z Phi(z)`` and
    ``z_b = (b - mean) / std``; ``l = -inf`` drops the second term.
    """
    log_upper = log_h((upper - mean) / std)
    finite = torch.isfinite(lower)
    z_lower = (torch.where(finite, lower, torch.zeros_like(lower)) - mean) / std
    ratio = torch.clamp(log_h(z_lower) - log_upper, max=-1e-15)
    tail = torch.where(finite, _log1mexp(ratio), torch.zeros_like(ratio))
    return torch.log(std) + log_upper + tail


class LogExpectedHypervolumeImprovement:
    """Log expected hypervolume improvement over a Pareto front, in closed form.

    The region the front does not dominate is a union of disjoint boxes (see
    ``_pareto.nondominated_boxes``); with independent objectives, the expected volume a new
    point adds to a box is a product of one-dimensional terms (Yang et al., 2019), summed over
    the boxes in log space. Boxes share their edges, so each objective's term is computed once
    per distinct interval and gathered into the boxes.

    Args:
        models: One model per objective.
        task_indices: The target's task index in each model.
        lower: Lower corners of the boxes ``(b, k)``, ``-inf`` allowed, standardized units.
        upper: Upper corners ``(b, k)``.
    """

    def __init__(
        self,
        models: list[PosteriorModel],
        task_indices: list[int],
        lower: torch.Tensor,
        upper: torch.Tensor,
    ) -> None:
        self.models = models
        self.task_indices = task_indices
        # Per objective: its distinct intervals (q_k, 2) and each box's interval (b,).
        self.intervals, self.box_interval = [], []
        for k in range(lower.shape[1]):
            pairs = torch.stack([lower[:, k], upper[:, k]], dim=1)  # (b, 2)
            unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
            self.intervals.append(unique)
            self.box_interval.append(inverse)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for model, task, intervals, box_interval in zip(
            self.models, self.task_indices, self.intervals, self.box_interval
        ):
            mean, variance = model.posterior(x, task)  # (m,), (m,)
            intervals = intervals.to(mean)
            terms = _log_expected_shortfall(
                mean[:, None], torch.sqrt(variance)[:, None], intervals[:, 0], intervals[:, 1]
            )  # (m, q_k)
            per_box = terms[:, box_interval.to(mean.device)]  # (m, b)
            total = per_box if total is None else total + per_box
        assert total is not None
        return torch.logsumexp(total, dim=1)  # (m,)


class LogProbabilityOfFeasibility:
    """``log P(c(x) <= threshold)`` for one constraint modelled by a GP.

    Args:
        model: Anything with ``posterior(x, task_index)``.
        task_index: The target's task index.
        threshold: The feasibility bound (raw zero) in the model's standardized units.
    """

    def __init__(self, model: PosteriorModel, task_index: int, threshold: float) -> None:
        self.model = model
        self.task_index = task_index
        self.threshold = threshold

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean, variance = self.model.posterior(x, self.task_index)
        return torch.special.log_ndtr((self.threshold - mean) / torch.sqrt(variance))


class ConstrainedAcquisition:
    """An acquisition weighted by the probability of feasibility (a sum of logs).

    Without an objective part it is the log probability of feasibility alone: the search for
    a first feasible point.

    Args:
        objective: The objective's log acquisition, or None.
        constraints: One log probability of feasibility per constraint.
    """

    def __init__(
        self,
        objective: Callable[[torch.Tensor], torch.Tensor] | None,
        constraints: list[LogProbabilityOfFeasibility],
    ) -> None:
        self.objective = objective
        self.constraints = constraints

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        terms = [constraint(x) for constraint in self.constraints]
        if self.objective is not None:
            terms.append(self.objective(x))
        return torch.stack(terms).sum(dim=0)
