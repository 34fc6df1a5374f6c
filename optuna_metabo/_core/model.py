"""The multi-task Gaussian process: an ICM kernel in GPyTorch, exact inference in torch.

The covariance between point ``x`` of task ``s`` and point ``x'`` of task ``t`` is
``k(x, x') * B[s, t]``, with ``k`` a Matérn-5/2 ARD kernel on the unit cube and
``B = W W^T + diag(v)`` a GPyTorch ``IndexKernel``. Hyperparameters are fitted by maximizing the
exact log marginal likelihood plus log priors with L-BFGS-B, warm-started from the previous fit.
This is the only module that imports GPyTorch; torch is imported lazily by the sampler.

Absent coordinates (NaN inputs) are filled with learned values, fitted with the other
hyperparameters by the marginal likelihood ("slots"):

- slot ``c < dim`` is the value of column ``c`` where it is *inactive*: a branch parameter
  under another parent choice (imputation with a learned offset, shared by all tasks). Query
  points with NaN take these values.
- the slots after them are *unknown* values: a parameter a prior task never tuned, which it
  held at a value nobody recorded. Each (task, column) pair learns its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import logging
import math
from typing import Any

import gpytorch
import numpy as np
import scipy.optimize
import torch

from optuna_metabo._core.types import ModelOptions


_logger = logging.getLogger(__name__)

DEFAULT_OPTIONS = ModelOptions()
_JITTERS = (0.0, 1e-8, 1e-6, 1e-4, 1e-2)
# Ranges of the learned slot values, in normalized units: an inactive column may sit anywhere
# near the unit interval; an unknown held value lies inside the target's range.
INACTIVE_RANGE = (-0.5, 1.5)
UNKNOWN_RANGE = (0.0, 1.0)
MIN_NOISE = 1e-6
# L-BFGS-B stops once an iteration lowers the per-point loss by less than this (relative to
# max(|loss|, 1)): 1e-5 per point is a few thousandths of a nat over a few hundred points.
_FIT_FTOL = 1e-5


class ModelFitError(RuntimeError):
    """The GP could not be fitted even with jitter and default hyperparameters."""


class SlotValues(torch.nn.Module):
    """The learned values that fill absent inputs, each inside its range (a sigmoid).

    Args:
        dim: Number of input columns: the first ``dim`` slots are inactive values.
        n_unknown: Number of unknown-value slots after them.
    """

    def __init__(self, dim: int, n_unknown: int) -> None:
        super().__init__()
        low = [INACTIVE_RANGE[0]] * dim + [UNKNOWN_RANGE[0]] * n_unknown
        high = [INACTIVE_RANGE[1]] * dim + [UNKNOWN_RANGE[1]] * n_unknown
        self.low: torch.Tensor
        self.span: torch.Tensor
        low_tensor = torch.tensor(low, dtype=torch.float64)  # (S,)
        span = torch.tensor(high, dtype=torch.float64) - low_tensor  # (S,)
        self.register_buffer("low", low_tensor)
        self.register_buffer("span", span)
        # Every slot starts at 0.5, the middle of the target's range.
        self.raw = torch.nn.Parameter(torch.logit((0.5 - low_tensor) / span))  # (S,)

    def forward(self) -> torch.Tensor:
        """The slot values ``(S,)``."""
        return self.low + self.span * torch.sigmoid(self.raw)


class ICMKernelModule(gpytorch.Module):
    """Hyperparameters of the ICM GP: Matérn-5/2 ARD, task IndexKernel and Gaussian noise.

    Args:
        dim: Number of input columns.
        n_tasks: Number of tasks (prior tasks plus the target).
        rank: Rank of the task covariance factor ``W``.
        n_unknown: Number of unknown-value slots (see the module docstring).
        options: Structural choices.
    """

    def __init__(
        self,
        dim: int,
        n_tasks: int,
        rank: int,
        n_unknown: int = 0,
        options: ModelOptions = DEFAULT_OPTIONS,
    ) -> None:
        super().__init__()
        from gpytorch.constraints import GreaterThan
        from gpytorch.kernels import IndexKernel
        from gpytorch.kernels import MaternKernel
        from gpytorch.priors import GammaPrior
        from gpytorch.priors import LogNormalPrior

        # Dimension-scaled lengthscale prior (Hvarfner et al., 2024; BoTorch's default).
        self.input_kernel = MaternKernel(
            nu=2.5,
            ard_num_dims=max(dim, 1),
            lengthscale_prior=LogNormalPrior(math.sqrt(2) + 0.5 * math.log(max(dim, 1)), 3**0.5),
            lengthscale_constraint=GreaterThan(1e-3),
        )
        self.input_kernel.lengthscale = math.exp(math.sqrt(2) + 0.5 * math.log(max(dim, 1)) - 1)
        self.task_kernel = IndexKernel(
            num_tasks=n_tasks, rank=rank, var_constraint=GreaterThan(1e-4)
        )
        self.task_kernel.register_prior(
            "var_prior", GammaPrior(2.0, 4.0), lambda m: m.var, lambda m, v: m._set_var(v)
        )
        with torch.no_grad():
            self.task_kernel.covar_factor.fill_(0.9 / math.sqrt(rank))
            self.task_kernel.var = torch.full((n_tasks,), 0.2)
        # One noise level per task: a prior task the kernel fits poorly must not set the
        # target's noise floor (that stalls fine convergence on the target).
        self.raw_noise = torch.nn.Parameter(torch.full((n_tasks,), math.log(1e-3)))
        self.noise_prior = LogNormalPrior(math.log(1e-3), 2.0)
        # The target's own part (its share ``v`` of ``B``) has lengthscales of its own: the
        # target is ``w g(x) + h(x)`` with ``g`` shared with the priors and ``h`` its own
        # process (a linear model of coregionalization). Where the target departs from the
        # priors, its own data set the scale of the departure.
        self.own_kernel = (
            MaternKernel(
                nu=2.5,
                ard_num_dims=max(dim, 1),
                lengthscale_prior=LogNormalPrior(
                    math.sqrt(2) + 0.5 * math.log(max(dim, 1)), 3**0.5
                ),
                lengthscale_constraint=GreaterThan(1e-3),
            )
            if n_tasks > 1 and options.own_lengthscales
            else None
        )
        if self.own_kernel is not None:
            self.own_kernel.lengthscale = self.input_kernel.lengthscale.detach().clone()
        self.correlation_prior = n_tasks > 1 and options.correlation_prior
        self.correlation_beta = options.correlation_beta
        # Registered last, so that without absent inputs the fit runs exactly as it did before
        # slots existed (L-BFGS-B sees the same leading parameters; the slots' gradient is 0).
        self.slots = SlotValues(dim, n_unknown)

    def slot_values(self) -> torch.Tensor:
        """Learned values of the slots ``(S,)``: ``dim`` inactive values, then unknown ones."""
        return self.slots()

    def fill(self, x: torch.Tensor, slot: torch.Tensor | None) -> torch.Tensor:
        """``x`` ``(n, d)`` with the entries where ``slot >= 0`` replaced by slot values."""
        if slot is None:
            return x
        values = self.slots()[slot.clamp_min(0)]  # (n, d)
        return torch.where(slot >= 0, values, x)

    @property
    def noise(self) -> torch.Tensor:
        """Noise variance of each task, shape ``(n_tasks,)``."""
        return MIN_NOISE + torch.exp(self.raw_noise)

    def task_covariance(self) -> torch.Tensor:
        """``B`` of shape ``(n_tasks, n_tasks)``."""
        return self.task_kernel.covar_matrix.to_dense()

    def input_covariance(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Matérn-5/2 covariance between ``x1`` ``(n, d)`` and ``x2`` ``(m, d)``: ``(n, m)``."""
        return self.input_kernel.forward(x1, x2)

    def own_variance(self) -> torch.Tensor:
        """The target's own variance ``v`` (its diagonal share of ``B``), a scalar tensor."""
        return self.task_kernel.var[-1]

    def log_prior(self) -> torch.Tensor:
        # Clamped: a task whose values are all alike drives its noise towards zero, and the
        # log-normal density is undefined at an exp() that underflowed to 0.
        total = self.noise_prior.log_prob(torch.exp(self.raw_noise.clamp_min(-60.0))).sum()
        for _, module, prior, closure, _ in self.named_priors():
            total = total + prior.log_prob(closure(module)).sum()
        return total + self.correlation_log_prior()

    def correlation_log_prior(self) -> torch.Tensor:
        """The Beta log density of ``(1 + rho) / 2`` for each prior task's correlation ``rho``
        with the target, summed, up to its constant (0 when off)."""
        b = self.task_covariance()  # (T, T)
        if not self.correlation_prior:
            return torch.zeros((), dtype=b.dtype, device=b.device)
        std = b.diagonal().sqrt()
        rho = b[:-1, -1] / (std[:-1] * std[-1])  # (T - 1,)
        share = ((1.0 + rho) / 2.0).clamp(1e-6, 1.0 - 1e-6)
        a, b_ = self.correlation_beta
        return ((a - 1.0) * torch.log(share) + (b_ - 1.0) * torch.log1p(-share)).sum()


@dataclass
class TrainingData:
    """Standardized observations of every task.

    Attributes:
        x: Normalized inputs, shape ``(n, d)``; NaN where a coordinate is absent.
        task: Task index of each row, shape ``(n,)``.
        y: Standardized values (lower is better), shape ``(n,)``.
        n_tasks: Number of tasks; the target is task ``n_tasks - 1``.
        slot: Which learned value fills each entry, shape ``(n, d)``: -1 where ``x`` is
            observed, the column where it is inactive, ``d + k`` for unknown value ``k``.
        n_unknown: Number of unknown-value slots.
        noise: Known variance of each row beyond its task's noise, in standardized units,
            shape ``(n,)``; positive for a pseudo-observation (a pruned trial's imputed final
            value), zero for a measured one. None: every row is measured.
        indicator_columns: Columns whose inactive entries are no learned value but the middle
            of the range plus an input of their own that says "inactive" (an explicit branch
            kernel: every inactive point is as far from every active value); the model then
            has one more input per such column.
    """

    x: np.ndarray
    task: np.ndarray
    y: np.ndarray
    n_tasks: int
    slot: np.ndarray | None = None
    n_unknown: int = 0
    noise: np.ndarray | None = None
    indicator_columns: np.ndarray | None = None


def _cholesky_with_jitter(matrix: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    for jitter in _JITTERS:
        factor, info = torch.linalg.cholesky_ex(matrix + jitter * eye)
        if int(info) == 0 and bool(torch.isfinite(factor).all()):
            return factor
    raise ModelFitError("The kernel matrix is not positive definite even with jitter 1e-2.")


class ICMGaussianProcess:
    """A fitted ICM GP conditioned on data; exposes the posterior of any task.

    Args:
        module: Fitted hyperparameters.
        x: Inputs ``(n, d + k)`` as a tensor, absent entries already filled (``module.fill``),
            with an indicator input after them for each of the ``k`` indicator columns.
        task: Task indices ``(n,)`` as a long tensor.
        y: Standardized values ``(n,)`` as a tensor.
        noise: Known extra variance of each row ``(n,)`` (see ``TrainingData.noise``).
        indicator_columns: See ``TrainingData.indicator_columns``.
    """

    def __init__(
        self,
        module: ICMKernelModule,
        x: torch.Tensor,
        task: torch.Tensor,
        y: torch.Tensor,
        noise: torch.Tensor | None = None,
        indicator_columns: np.ndarray | None = None,
    ) -> None:
        self.module = module
        self.x, self.task, self.y = x, task, y
        self.noise = torch.zeros_like(y) if noise is None else noise  # (n,)
        self.indicator_columns = _no_columns(indicator_columns)  # (k,)
        with torch.no_grad():
            self._inactive = module.slot_values()[: x.shape[1]].to(x)  # (d,)
            self._task_cov = module.task_covariance()  # (T, T)
            self._lengthscale = module.input_kernel.lengthscale.reshape(-1).clone()  # (d,)
            self._own = _OwnPart.of(module, task)
            covariance = _covariance(module, x, task) + torch.diag(self.noise)  # (n, n)
            self._cholesky = _cholesky_with_jitter(covariance)
            self._alpha = torch.cholesky_solve(y[:, None], self._cholesky)[:, 0]  # (n,)

    @property
    def n_tasks(self) -> int:
        return int(self._task_cov.shape[0])

    @property
    def inputs(self) -> np.ndarray:
        """The training inputs in the search space's columns, absent entries filled ``(n, d)``
        (without the indicator inputs)."""
        return self.x.detach().cpu().numpy()[:, : self.x.shape[1] - len(self.indicator_columns)]

    def posterior(self, x: torch.Tensor, task_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of the latent function of one task.

        Args:
            x: Points of shape ``(m, d)``; gradients flow through. NaN marks an inactive
                coordinate; it takes the column's learned inactive value.
            task_index: Which task.

        Returns:
            Mean and variance, each of shape ``(m,)``, in standardized units (lower is better).
        """
        x = with_indicators(x.to(device=self.x.device, dtype=self.x.dtype), self.indicator_columns)
        x = self._fill_inactive(x)
        # The same Matérn-5/2 as the module's GPyTorch kernel, with the lengthscales held
        # fixed: gradients flow to ``x`` only, not into the hyperparameters.
        shared = matern52(x, self.x, self._lengthscale)  # (m, n)
        cross = shared * self._task_cov[task_index][self.task]  # (m, n)
        if self._own is not None and task_index == self.n_tasks - 1:
            rows, own = self._own.rows, self._own
            own_cross = matern52(x, self.x[rows], own.lengthscale) - shared[:, rows]  # (m, r)
            cross = cross.index_add(1, rows, own.variance * own_cross)
        mean = cross @ self._alpha  # (m,)
        v = torch.linalg.solve_triangular(self._cholesky, cross.T, upper=False)  # (n, m)
        prior_var = self._task_cov[task_index, task_index]
        variance = torch.clamp(prior_var - (v * v).sum(dim=0), min=1e-12)  # (m,)
        return mean, variance

    def _fill_inactive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(torch.isnan(x), self._inactive, x)

    def loo_log_likelihood(self, task_index: int) -> float:
        """Summed leave-one-out predictive log density of one task's measured observations
        (pseudo-observations are predictors, not scored).

        Each observation is predicted from all the others, of every task, in closed form:
        ``mu_i = y_i - alpha_i / d_i`` and ``var_i = 1 / d_i`` with ``d_i = [K^-1]_ii``
        (Rasmussen & Williams, 2006, section 5.4.2).

        Args:
            task_index: Which task's observations to score.
        """
        with torch.no_grad():
            measured = (self.task == task_index) & (self.noise == 0)
            rows = torch.nonzero(measured).reshape(-1)  # (m,)
            if len(rows) == 0:
                return 0.0
            unit = torch.zeros(len(self.y), len(rows), dtype=self.y.dtype, device=self.y.device)
            unit[rows, torch.arange(len(rows))] = 1.0  # (n, m)
            half = torch.linalg.solve_triangular(self._cholesky, unit, upper=False)  # (n, m)
            inverse_diag = (half * half).sum(dim=0)  # (m,)
            alpha = self._alpha[rows]  # (m,)
            log_density = -0.5 * (
                math.log(2 * math.pi) - torch.log(inverse_diag) + alpha**2 / inverse_diag
            )
            return float(log_density.sum())

    def task_correlations(self) -> np.ndarray:
        """Correlation of each task with the target (the last task), shape ``(T,)``."""
        cov = self._task_cov.detach().cpu().numpy()
        std = np.sqrt(np.diag(cov))
        return cov[-1] / (std[-1] * std)

    def condition_on(self, x: torch.Tensor, task_index: int) -> ICMGaussianProcess:
        """Adds pseudo-observations at their posterior mean (the Kriging believer).

        Args:
            x: Pending points of shape ``(p, d)``.
            task_index: Their task.
        """
        with torch.no_grad():
            mean, _ = self.posterior(x, task_index)
            x = self._fill_inactive(with_indicators(x.to(self.x), self.indicator_columns))
        task = torch.full((len(x),), task_index, dtype=torch.long, device=x.device)
        return ICMGaussianProcess(
            self.module,
            torch.cat([self.x, x]),
            torch.cat([self.task, task]),
            torch.cat([self.y, mean]),
            torch.cat([self.noise, torch.zeros_like(mean)]),
            self.indicator_columns,
        )


def _no_columns(columns: np.ndarray | None) -> np.ndarray:
    """The indicator columns ``(k,)``, none for None."""
    return np.zeros(0, dtype=np.int64) if columns is None else np.asarray(columns, np.int64)


def with_indicators(x: torch.Tensor, columns: np.ndarray) -> torch.Tensor:
    """``x`` ``(m, d)`` with the NaN entries of ``columns`` ``(k,)`` at the middle of the range
    and ``k`` indicator inputs appended (1 where the entry was NaN): ``(m, d + k)``."""
    if len(columns) == 0:
        return x
    index = torch.as_tensor(columns, device=x.device)
    inactive = torch.isnan(x[:, index])  # (m, k)
    x = x.clone()
    x[:, index] = torch.where(inactive, torch.full_like(x[:, index], 0.5), x[:, index])
    return torch.cat([x, inactive.to(x.dtype)], dim=1)


def matern52(x1: torch.Tensor, x2: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """Matérn-5/2 covariance between ``x1`` ``(m, d)`` and ``x2`` ``(n, d)``: ``(m, n)``.

    Args:
        x1: First points.
        x2: Second points.
        lengthscale: ARD lengthscales ``(d,)``.
    """
    a, b = x1 / lengthscale, x2 / lengthscale
    squared = (a * a).sum(dim=1, keepdim=True) - 2.0 * a @ b.T + (b * b).sum(dim=1)  # (m, n)
    r = math.sqrt(5.0) * squared.clamp_min(1e-30).sqrt()  # (m, n); no NaN gradient at 0
    return (1.0 + r + r * r / 3.0) * torch.exp(-r)


@dataclass
class _OwnPart:
    """The target's own process in a fitted GP: its rows, lengthscales and variance."""

    rows: torch.Tensor  # (r,) indices of the target's rows
    lengthscale: torch.Tensor  # (d,)
    variance: torch.Tensor  # scalar

    @classmethod
    def of(cls, module: ICMKernelModule, task: torch.Tensor) -> _OwnPart | None:
        if module.own_kernel is None:
            return None
        n_tasks = module.task_kernel.covar_factor.shape[0]
        return cls(
            rows=torch.nonzero(task == n_tasks - 1).reshape(-1),
            lengthscale=module.own_kernel.lengthscale.reshape(-1).detach().clone(),
            variance=module.own_variance().detach().clone(),
        )

    def block(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """What the own part changes in the covariance of the target's rows: ``(r, r)``.

        Args:
            x: All training inputs ``(n, d)``.
            shared: The shared Matérn-5/2 kernel on all rows ``(n, n)``.
        """
        rows = self.rows
        own = matern52(x[rows], x[rows], self.lengthscale)  # (r, r)
        return self.variance * (own - shared[rows][:, rows])


def _covariance(module: ICMKernelModule, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
    """Training covariance with noise, shape ``(n, n)``."""
    shared = module.input_covariance(x, x)  # (n, n)
    covariance = shared * module.task_covariance()[task][:, task]
    own = _OwnPart.of(module, task)
    if own is not None:
        index = own.rows
        covariance[index[:, None], index[None, :]] += own.block(x, shared)
    return covariance + torch.diag(module.noise[task])


def _matern52_terms(
    x: torch.Tensor, lengthscale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matérn-5/2 values ``k`` ``(n, n)`` and ``exp(-r) (1 + r) 5 / 3`` ``(n, n)``, where
    ``r = sqrt(5) * |x_i - x_j| / lengthscale``; the second term gives ``dk/dlengthscale``."""
    distance = torch.cdist(x / lengthscale, x / lengthscale)  # (n, n)
    r = math.sqrt(5.0) * distance
    decay = torch.exp(-r)
    return (1.0 + r + r * r / 3.0) * decay, (5.0 / 3.0) * (1.0 + r) * decay


def _lengthscale_gradient(
    weight: torch.Tensor, x: torch.Tensor, lengthscale: torch.Tensor
) -> torch.Tensor:
    """``sum_ij weight_ij (x_ik - x_jk)^2 / lengthscale_k^3`` for each column ``k``: ``(d,)``.

    With ``weight = dL/dk * exp(-r) (1 + r) 5 / 3`` this is ``dL/dlengthscale``; the pairwise
    sum is expanded into matrix products, so no ``(n, n, d)`` tensor is formed.
    """
    row_weight = weight.sum(dim=0) + weight.sum(dim=1)  # (n,)
    cross = (x * (weight @ x)).sum(dim=0)  # (d,)
    return ((x * x * row_weight[:, None]).sum(dim=0) - 2.0 * cross) / lengthscale**3


def negative_log_posterior(
    module: ICMKernelModule,
    x: torch.Tensor,
    task: torch.Tensor,
    y: torch.Tensor,
    slot: torch.Tensor | None = None,
    extra_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """``-(log marginal likelihood + log prior) / n`` of the data under the module.

    The value is exact. Its gradient is analytic up to the lengthscales, the task covariance,
    the noise levels and the filled inputs (through ``dL/dK = (alpha alpha^T - K^-1) / 2``),
    and autograd only carries it through GPyTorch's constraints and priors and the slot values:
    no ``(n, n)`` tensor is part of the autograd graph, which makes one evaluation about twice
    as fast.

    Args:
        module: The hyperparameters.
        x: Inputs ``(n, d)``, NaN where ``slot`` fills them.
        task: Task indices ``(n,)``.
        y: Standardized values ``(n,)``.
        slot: See ``TrainingData.slot``; None if every entry of ``x`` is observed.
        extra_noise: Known extra variance of each row ``(n,)`` (see ``TrainingData.noise``).
    """
    n = len(y)
    filled = module.fill(x, slot)  # (n, d), part of the graph through the slot values
    x = filled.detach()
    lengthscale = module.input_kernel.lengthscale.reshape(-1)  # (d,), part of the graph
    task_cov = module.task_covariance()  # (T, T), part of the graph
    noise = module.noise  # (T,), part of the graph
    own = _OwnTerms.of(module, x, task)
    with torch.no_grad():
        kernel, slope = _matern52_terms(x, lengthscale)  # (n, n) each
        row_task_cov = task_cov[task][:, task]  # (n, n)
        if own is not None:
            # On the target's rows the shared kernel carries B_TT - v; v goes with its own.
            row_task_cov = own.shared_task_covariance(row_task_cov)
        row_noise = noise[task] if extra_noise is None else noise[task] + extra_noise
        covariance = kernel * row_task_cov + torch.diag(row_noise)
        if own is not None:
            covariance = own.add_block(covariance)
        cholesky = _cholesky_with_jitter(covariance)
        alpha = torch.cholesky_solve(y[:, None], cholesky)[:, 0]  # (n,)
        log_likelihood = (
            -0.5 * (y * alpha).sum()
            - torch.log(torch.diagonal(cholesky)).sum()
            - 0.5 * n * math.log(2 * math.pi)
        )
        grad_covariance = 0.5 * (torch.outer(alpha, alpha) - torch.cholesky_inverse(cholesky))
        one_hot = torch.nn.functional.one_hot(task, len(noise)).to(x.dtype)  # (n, T)
        # As if the shared kernel carried all of B; the own part's term corrects v below.
        grad_task_cov = one_hot.T @ (grad_covariance * kernel) @ one_hot  # (T, T)
        grad_noise = one_hot.T @ torch.diagonal(grad_covariance)  # (T,)
        weight = grad_covariance * row_task_cov * slope  # (n, n)
        grad_lengthscale = _lengthscale_gradient(weight, x, lengthscale)
        # dL/dx_ik = -2 / l_k^2 * sum_j weight_ij (x_ik - x_jk), only needed for filled entries.
        grad_x = (
            -2.0 * (x * weight.sum(dim=1, keepdim=True) - weight @ x) / lengthscale**2
            if slot is not None
            else torch.zeros_like(x)
        )
    # d(surrogate)/d(parameters) == d(log_likelihood)/d(parameters); its value is zero.
    surrogate = (
        (lengthscale * grad_lengthscale).sum()
        + (task_cov * grad_task_cov).sum()
        + (noise * grad_noise).sum()
    )
    if own is not None:
        surrogate = surrogate + own.surrogate(grad_covariance, kernel, grad_x)
    surrogate = surrogate + (filled * grad_x).sum()
    value = log_likelihood + surrogate - surrogate.detach()
    return -(value + module.log_prior()) / n


@dataclass
class _OwnTerms:
    """The target's own process inside ``negative_log_posterior``.

    ``lengthscale`` and ``variance`` are part of the autograd graph; ``kernel`` and ``slope``
    (see ``_matern52_terms``) are the own kernel on the target's rows ``(r, r)``.
    """

    rows: torch.Tensor  # (r,)
    x: torch.Tensor  # (r, d)
    lengthscale: torch.Tensor  # (d,)
    variance: torch.Tensor  # scalar
    kernel: torch.Tensor  # (r, r)
    slope: torch.Tensor  # (r, r)

    @classmethod
    def of(cls, module: ICMKernelModule, x: torch.Tensor, task: torch.Tensor) -> _OwnTerms | None:
        if module.own_kernel is None:
            return None
        n_tasks = module.task_kernel.covar_factor.shape[0]
        rows = torch.nonzero(task == n_tasks - 1).reshape(-1)
        lengthscale = module.own_kernel.lengthscale.reshape(-1)
        with torch.no_grad():
            kernel, slope = _matern52_terms(x[rows], lengthscale)
        return cls(rows, x[rows], lengthscale, module.own_variance(), kernel, slope)

    def shared_task_covariance(self, row_task_cov: torch.Tensor) -> torch.Tensor:
        """``B[task][:, task]`` ``(n, n)`` less ``v`` on the target's pairs."""
        shared = row_task_cov.clone()
        shared[self.rows[:, None], self.rows[None, :]] -= self.variance.detach()
        return shared

    def add_block(self, covariance: torch.Tensor) -> torch.Tensor:
        """``covariance`` with ``v`` times the own kernel added on the target's pairs."""
        out = covariance.clone()
        out[self.rows[:, None], self.rows[None, :]] += self.variance.detach() * self.kernel
        return out

    def surrogate(
        self, grad_covariance: torch.Tensor, shared: torch.Tensor, grad_x: torch.Tensor
    ) -> torch.Tensor:
        """The own part's gradient terms; adds its input gradient to ``grad_x`` in place.

        Args:
            grad_covariance: ``dL/dK`` ``(n, n)``.
            shared: The shared kernel ``(n, n)``.
            grad_x: ``dL/dx`` ``(n, d)`` of the shared part.
        """
        with torch.no_grad():
            block = grad_covariance[self.rows][:, self.rows]  # (r, r)
            # dL/dv beyond the B term: the target's pairs swap the shared kernel for their own.
            grad_variance = (block * (self.kernel - shared[self.rows][:, self.rows])).sum()
            weight = block * self.variance.detach() * self.slope  # (r, r)
            grad_lengthscale = _lengthscale_gradient(weight, self.x, self.lengthscale.detach())
            grad_x[self.rows] += (
                -2.0
                * (self.x * weight.sum(dim=1, keepdim=True) - weight @ self.x)
                / self.lengthscale.detach() ** 2
            )
        return (self.variance * grad_variance) + (self.lengthscale * grad_lengthscale).sum()


def _flat_parameters(module: ICMKernelModule) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).cpu().numpy()


def _assign_parameters(module: ICMKernelModule, flat: np.ndarray) -> None:
    offset = 0
    with torch.no_grad():
        for p in module.parameters():
            size = p.numel()
            chunk = torch.from_numpy(flat[offset : offset + size]).reshape(p.shape)
            p.copy_(chunk.to(p))
            offset += size


def _optimize_hyperparameters(
    module: ICMKernelModule,
    x: torch.Tensor,
    task: torch.Tensor,
    y: torch.Tensor,
    slot: torch.Tensor | None,
    extra_noise: torch.Tensor,
    max_iter: int,
) -> float:
    """Runs L-BFGS-B on the module's parameters in place and returns the final loss."""

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        _assign_parameters(module, flat)
        module.zero_grad()
        loss = negative_log_posterior(module, x, task, y, slot, extra_noise)
        loss.backward()
        grad = torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                for p in module.parameters()
            ]
        )
        return float(loss.detach()), grad.cpu().numpy().astype(np.float64)

    result = scipy.optimize.minimize(
        loss_and_grad,
        _flat_parameters(module),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "ftol": _FIT_FTOL},
    )
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
        raise ModelFitError(f"Hyperparameter optimization diverged: {result.message}")
    _assign_parameters(module, result.x)
    return float(result.fun)


def fit_icm_gp(
    data: TrainingData,
    rank: int,
    previous_state: Mapping[str, Any] | None = None,
    fit_subset: np.ndarray | None = None,
    max_iter: int = 100,
    device: str = "cpu",
    alternative_states: Sequence[Mapping[str, Any]] = (),
    options: ModelOptions = DEFAULT_OPTIONS,
) -> tuple[ICMGaussianProcess, dict[str, Any]]:
    """Fits the hyperparameters and conditions the GP on all of ``data``.

    Args:
        data: Training data of all tasks.
        rank: Rank of the task covariance factor.
        previous_state: A state dict of an earlier fit of the same shape to start from.
        fit_subset: Row indices used for fitting hyperparameters (all rows if None); the
            returned GP is conditioned on every row.
        max_iter: L-BFGS-B iterations; 0 keeps ``previous_state`` as it is.
        device: Torch device of the tensors.
        alternative_states: More starts, fitted after the first; the fit with the highest
            log posterior is kept (for multi-modal fits, such as learned held values).
        options: Structural choices of the model.

    Returns:
        The conditioned GP and the state dict to warm-start the next fit.
    """
    columns = _no_columns(data.indicator_columns)
    x = torch.as_tensor(data.x, dtype=torch.float64, device=device)  # (n, d), NaN: absent
    x = with_indicators(x, columns)  # (n, d + k)
    task = torch.as_tensor(data.task, dtype=torch.long, device=device)  # (n,)
    y = torch.as_tensor(data.y, dtype=torch.float64, device=device)  # (n,)
    slot = _slot_tensor(data, device)  # (n, d + k) or None
    noise = torch.zeros_like(y) if data.noise is None else torch.as_tensor(data.noise).to(y)
    rows = slice(None) if fit_subset is None else torch.as_tensor(fit_subset, device=device)
    fit_data = (x[rows], task[rows], y[rows], None if slot is None else slot[rows], noise[rows])

    def fit_from(state: Mapping[str, Any] | None) -> tuple[ICMKernelModule, float]:
        module = ICMKernelModule(x.shape[1], data.n_tasks, rank, data.n_unknown, options)
        module = module.to(device=device, dtype=torch.float64)
        if state is not None:
            module.load_state_dict(state)
        if max_iter == 0:
            return module, 0.0
        return module, _optimize_hyperparameters(module, *fit_data, max_iter)

    # A warm start first; if that fit fails, one more from the default hyperparameters.
    starts = [previous_state, None] if previous_state is not None else [None]
    last_error: Exception | None = None
    for state in starts:
        try:
            module, loss = fit_from(state)
            for alternative in alternative_states if max_iter > 0 else ():
                module, loss = min([(module, loss), fit_from(alternative)], key=lambda m: m[1])
            with torch.no_grad():
                filled = module.fill(x, slot)
            model = ICMGaussianProcess(module, filled, task, y, noise, columns)
            return model, module.state_dict()
        except (ModelFitError, RuntimeError, ValueError) as error:
            _logger.warning("GP fit failed (%s); retrying from default hyperparameters.", error)
            last_error = error
    raise ModelFitError(f"GP fit failed: {last_error}")


def with_slot_values(
    state: Mapping[str, Any], slots: np.ndarray, values: np.ndarray
) -> dict[str, Any]:
    """A copy of ``state`` whose ``slots`` ``(k,)`` start at ``values`` ``(k,)``.

    Args:
        state: A module state dict.
        slots: Slot indices.
        values: Their new values, inside their ranges.
    """
    copy = dict(state)
    low, span = state["slots.low"][slots], state["slots.span"][slots]
    share = torch.as_tensor(values, dtype=low.dtype).sub(low).div(span).clamp(0.02, 0.98)
    raw = state["slots.raw"].clone()
    raw[torch.as_tensor(slots)] = torch.logit(share)
    copy["slots.raw"] = raw
    return copy


def _slot_tensor(data: TrainingData, device: str) -> torch.Tensor | None:
    """``data.slot`` as a long tensor ``(n, d + k)``, the indicator columns' inactive entries
    and the indicator inputs unfilled; None where no entry is filled (the plain GP)."""
    if data.slot is None:
        return None
    columns = _no_columns(data.indicator_columns)
    slot = data.slot.copy()
    if len(columns):
        slot[:, columns] = np.where(slot[:, columns] == columns, -1, slot[:, columns])
        slot = np.where(slot >= data.x.shape[1], slot + len(columns), slot)  # after the inputs
        slot = np.concatenate([slot, np.full((len(slot), len(columns)), -1)], axis=1)
    if not (slot >= 0).any():
        return None
    return torch.as_tensor(slot, dtype=torch.long, device=device)


def compatible_state(
    state: Mapping[str, Any] | None,
    dim: int,
    n_tasks: int,
    rank: int,
    n_unknown: int = 0,
    options: ModelOptions = DEFAULT_OPTIONS,
) -> Mapping[str, Any] | None:
    """Returns ``state`` if it has the given shape, else None, so warm starts never break."""
    if state is None:
        return None
    reference = ICMKernelModule(dim, n_tasks, rank, n_unknown, options).state_dict()
    if reference.keys() != state.keys():
        return None
    if any(reference[k].shape != state[k].shape for k in reference):
        return None
    return state
