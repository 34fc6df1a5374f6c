from __future__ import annotations

import math

import gpytorch
import numpy as np
import pytest
import torch

from optuna_metabo._core.model import _cholesky_with_jitter
from optuna_metabo._core.model import compatible_state
from optuna_metabo._core.model import fit_icm_gp
from optuna_metabo._core.model import ICMGaussianProcess
from optuna_metabo._core.model import ICMKernelModule
from optuna_metabo._core.model import matern52
from optuna_metabo._core.model import MIN_NOISE
from optuna_metabo._core.model import ModelFitError
from optuna_metabo._core.model import negative_log_posterior
from optuna_metabo._core.model import TrainingData
from optuna_metabo._core.types import ModelOptions


def _two_tasks(sign: float, n: int = 30, seed: int = 0) -> TrainingData:
    rng = np.random.RandomState(seed)
    x = rng.rand(2 * n, 2)
    task = np.repeat([0, 1], n)
    f = np.sin(6 * x[:, 0]) + x[:, 1] ** 2
    y = np.where(task == 1, sign * f, f)
    y = (y - y.mean()) / y.std()
    return TrainingData(x=x, task=task, y=y, n_tasks=2)


def _reference_covariance(
    module: ICMKernelModule, x: torch.Tensor, task: torch.Tensor
) -> torch.Tensor:
    """The noiseless covariance written out with masks, for comparison: the shared kernel
    times ``B``, except that on pairs of target rows the target's own share ``v`` of ``B``
    goes with the own kernel."""
    b = module.task_covariance()
    shared = module.input_covariance(x, x)
    covariance = shared * b[task][:, task]
    if module.own_kernel is None:
        return covariance
    target = (task == b.shape[0] - 1).to(x.dtype)
    pairs = target[:, None] * target[None, :]
    return covariance + pairs * module.own_variance() * (module.own_kernel.forward(x, x) - shared)


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, module: ICMKernelModule) -> None:
        row_noise = module.noise.detach()[x[:, -1].long()]
        likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=row_noise)
        super().__init__(x, y, likelihood)
        self.module = module

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        inputs, task = x[:, :-1], x[:, -1].long()
        covar = _reference_covariance(self.module, inputs, task)
        return gpytorch.distributions.MultivariateNormal(torch.zeros(len(x), dtype=x.dtype), covar)


def _module_with_task_noise(noise: tuple[float, float]) -> ICMKernelModule:
    """A two-task module whose tasks have different noise levels."""
    module = ICMKernelModule(2, 2, 1).double()
    with torch.no_grad():
        module.raw_noise.copy_(torch.log(torch.tensor(noise, dtype=torch.float64) - MIN_NOISE))
    return module


def test_marginal_likelihood_matches_gpytorch() -> None:
    data = _two_tasks(1.0)
    module = _module_with_task_noise((1e-2, 1e-1))
    x = torch.as_tensor(data.x)
    task = torch.as_tensor(data.task)
    y = torch.as_tensor(data.y)
    ours = negative_log_posterior(module, x, task, y)
    gp = _ExactGP(torch.cat([x, task[:, None].double()], 1), y, module).double()
    gp.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(gp.likelihood, gp)
    with gpytorch.settings.max_cholesky_size(10_000):
        # gpytorch divides by n and already adds the priors registered on the kernels.
        theirs = mll(gp(*gp.train_inputs), y) * len(y)
    noise_log_prior = module.noise_prior.log_prob(module.noise - MIN_NOISE).sum()
    # GPyTorch's priors do not include the prior on the target's task correlations.
    expected = -(theirs + noise_log_prior + module.correlation_log_prior()) / len(y)
    assert float(ours) == pytest.approx(float(expected), rel=1e-6)


def _absent_entries(
    x: torch.Tensor, task: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Marks column 0 of task 0 unknown (slot ``dim``) and column 1 of every third row
    inactive (slot 1): ``x`` with NaN there, the slot indices, and the number of unknown slots."""
    slot = torch.full(x.shape, -1, dtype=torch.long)
    slot[task == 0, 0] = dim
    slot[::3, 1] = 1
    return torch.where(slot >= 0, torch.nan, x), slot, 1


@pytest.mark.parametrize(
    ("dim", "n_tasks", "rank", "absent"),
    [(2, 2, 1, False), (4, 3, 2, False), (2, 2, 1, True), (4, 3, 2, True)],
)
def test_gradient_equals_autograd_through_cholesky(
    dim: int, n_tasks: int, rank: int, absent: bool
) -> None:
    rng = np.random.RandomState(1)
    x = torch.as_tensor(rng.rand(12 * n_tasks, dim))
    task = torch.as_tensor(np.repeat(np.arange(n_tasks), 12))
    y = torch.as_tensor(rng.randn(12 * n_tasks))
    slot, n_unknown = None, 0
    if absent:
        x, slot, n_unknown = _absent_entries(x, task, dim)
    module = ICMKernelModule(dim, n_tasks, rank, n_unknown).double()
    with torch.no_grad():
        # Away from the defaults, so every parameter has a distinct, non-trivial gradient.
        for parameter in module.parameters():
            parameter.add_(torch.as_tensor(rng.uniform(-0.5, 0.5, parameter.shape)))

    def reference() -> torch.Tensor:
        filled = module.fill(x, slot)
        covariance = _reference_covariance(module, filled, task)
        covariance = covariance + torch.diag(module.noise[task])
        chol = torch.linalg.cholesky(covariance)
        alpha = torch.cholesky_solve(y[:, None], chol)[:, 0]
        ll = -0.5 * (y * alpha).sum() - torch.log(chol.diagonal()).sum()
        ll = ll - 0.5 * len(y) * math.log(2 * math.pi)
        return -(ll + module.log_prior()) / len(y)

    expected_value = reference()
    expected_value.backward()
    expected = [p.grad if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]
    expected = [g.clone() for g in expected]
    module.zero_grad()
    value = negative_log_posterior(module, x, task, y, slot)
    value.backward()
    torch.testing.assert_close(value, expected_value)
    for p, g in zip(module.parameters(), expected):
        torch.testing.assert_close(p.grad if p.grad is not None else torch.zeros_like(p), g)
    if absent:  # the slots really are learned: their gradient is not zero
        assert module.slots.raw.grad is not None
        assert (
            float(module.slots.raw.grad[1].abs()) > 0
            and float(module.slots.raw.grad[dim].abs()) > 0
        )


@pytest.mark.slow
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fit_learns_the_sign_of_task_correlation(sign: float) -> None:
    model, _ = fit_icm_gp(_two_tasks(sign), rank=1)
    correlation = model.task_correlations()[0]
    assert sign * correlation > 0.8


def test_posterior_interpolates_and_pending_points_reduce_variance() -> None:
    data = _two_tasks(1.0, n=8)
    model, state = fit_icm_gp(data, rank=1)
    x_train = torch.as_tensor(data.x[data.task == 1][:5])
    mean, var = model.posterior(x_train, 1)
    np.testing.assert_allclose(mean.detach().numpy(), data.y[data.task == 1][:5], atol=0.15)
    far = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    _, before = model.posterior(far, 1)
    _, after = model.condition_on(far, 1).posterior(far, 1)
    assert float(after) < 0.2 * float(before)
    assert compatible_state(state, 2, 2, 1) is state
    assert compatible_state(state, 3, 2, 1) is None


@pytest.mark.slow
def test_warm_start_and_duplicate_inputs_are_handled() -> None:
    data = _two_tasks(1.0)
    doubled = TrainingData(
        np.concatenate([data.x, data.x]),
        np.concatenate([data.task, data.task]),
        np.concatenate([data.y, data.y]),
        2,
    )
    _, state = fit_icm_gp(data, rank=1)
    model, _ = fit_icm_gp(doubled, rank=1, previous_state=state, max_iter=10)
    mean, var = model.posterior(torch.as_tensor(data.x[:3]), 0)
    assert torch.isfinite(mean).all() and (var > 0).all()


def test_cholesky_jitter_and_failure() -> None:
    singular = torch.ones(4, 4, dtype=torch.float64)
    assert torch.isfinite(_cholesky_with_jitter(singular)).all()
    with pytest.raises(ModelFitError):
        _cholesky_with_jitter(-torch.eye(3, dtype=torch.float64))


def test_each_task_gets_its_own_noise_level() -> None:
    rng = np.random.RandomState(1)
    x = rng.rand(60, 1)
    task = np.repeat([0, 1], 30)
    y = np.sin(6 * x[:, 0]) + np.where(task == 1, 0.3 * rng.randn(60), 0.0)
    data = TrainingData(x=x, task=task, y=(y - y.mean()) / y.std(), n_tasks=2)
    model, _ = fit_icm_gp(data, rank=1)
    noise = model.module.noise.detach().numpy()
    assert noise[1] > 10 * noise[0]


def test_leave_one_out_density_equals_refitting_without_each_point() -> None:
    data = _two_tasks(1.0, n=6, seed=3)
    model, _ = fit_icm_gp(data, rank=1)
    x, task, y = model.x, model.task, model.y
    expected = 0.0
    for i in torch.nonzero(task == 1).reshape(-1).tolist():
        keep = torch.arange(len(y)) != i
        rest = ICMGaussianProcess(model.module, x[keep], task[keep], y[keep])
        with torch.no_grad():
            mean, variance = rest.posterior(x[i : i + 1], 1)
            variance = variance + model.module.noise[1]  # The density of an observation.
        expected += float(torch.distributions.Normal(mean, variance.sqrt()).log_prob(y[i]).sum())
    assert math.isclose(model.loo_log_likelihood(1), expected, rel_tol=1e-6, abs_tol=1e-8)


@pytest.mark.slow
def test_leave_one_out_density_prefers_the_task_that_explains_the_target() -> None:
    related, _ = fit_icm_gp(_two_tasks(1.0, n=12), rank=1)
    target_alone = _two_tasks(1.0, n=12)
    rows = target_alone.task == 1
    alone, _ = fit_icm_gp(
        TrainingData(
            x=target_alone.x[rows], task=np.zeros(12, dtype=int), y=target_alone.y[rows], n_tasks=1
        ),
        rank=1,
    )
    # With a closely related prior task, the target's points are predicted better jointly.
    assert related.loo_log_likelihood(1) > alone.loo_log_likelihood(0)


def test_posterior_kernel_matches_gpytorch_and_leaves_hyperparameters_alone() -> None:
    data = _two_tasks(1.0, n=10)
    model, _ = fit_icm_gp(data, rank=1)
    x = torch.rand(7, 2, dtype=torch.float64)
    expected = model.module.input_covariance(x, model.x).detach()
    lengthscale = model.module.input_kernel.lengthscale.detach().reshape(-1)
    torch.testing.assert_close(matern52(x, model.x, lengthscale), expected, rtol=0, atol=1e-12)
    x.requires_grad_(True)
    model.module.zero_grad(set_to_none=True)
    mean, variance = model.posterior(x, 1)
    (mean + variance).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is None for p in model.module.parameters())


def test_posterior_equals_the_reference_covariance() -> None:
    rng = np.random.RandomState(4)
    data = _two_tasks(1.0, n=9)
    model, _ = fit_icm_gp(data, rank=1)
    module = model.module
    with torch.no_grad():  # away from the fit, so the own part differs from the shared one
        assert module.own_kernel is not None
        module.own_kernel.lengthscale = torch.as_tensor(rng.uniform(0.1, 0.5, (1, 2)))
    model = ICMGaussianProcess(module, model.x, model.task, model.y)
    query = torch.as_tensor(rng.rand(5, 2))
    x = torch.cat([model.x, query])
    for task_index in (0, 1):
        task = torch.cat([model.task, torch.full((5,), task_index)])
        with torch.no_grad():
            joint = _reference_covariance(module, x, task)
            train = joint[:-5, :-5] + torch.diag(module.noise[model.task])
            cross = joint[-5:, :-5]
            expected_mean = cross @ torch.linalg.solve(train, model.y)
            expected_var = joint[-5:, -5:].diagonal() - (
                cross * torch.linalg.solve(train, cross.T).T
            ).sum(dim=1)
            mean, variance = model.posterior(query, task_index)
        torch.testing.assert_close(mean, expected_mean)
        torch.testing.assert_close(variance, expected_var)


@pytest.mark.slow
def test_target_learns_lengthscales_of_its_own() -> None:
    # The target is the prior's smooth function plus a fast wiggle along x0 only: its own
    # part needs a much shorter lengthscale there than the shared one.
    rng = np.random.RandomState(5)
    x = rng.rand(80, 2)
    task = np.repeat([0, 1], 40)
    smooth = np.sin(3 * x[:, 0]) + x[:, 1]
    y = smooth + np.where(task == 1, 0.4 * np.sin(25 * x[:, 0]), 0.0)
    model, _ = fit_icm_gp(TrainingData(x, task, (y - y.mean()) / y.std(), 2), rank=1)
    shared = model.module.input_kernel.lengthscale.detach().reshape(-1)
    own_kernel = model.module.own_kernel
    assert own_kernel is not None
    own = own_kernel.lengthscale.detach().reshape(-1)
    assert float(own[0]) < 0.5 * float(shared[0])
    assert model.module.own_variance() > 0.01


def test_correlation_prior_is_the_beta_density_up_to_a_constant() -> None:
    module = ICMKernelModule(2, 3, 1).double()
    beta = torch.distributions.Beta(torch.tensor(2.5), torch.tensor(1.5))
    values = []
    for factor in ((0.9, 0.9, 0.9), (0.9, -0.5, 0.3)):
        with torch.no_grad():
            module.task_kernel.covar_factor.copy_(torch.tensor(factor)[:, None])
        b = module.task_covariance().detach()
        rho = b[:-1, -1] / (b.diagonal()[:-1] * b[-1, -1]).sqrt()
        expected = beta.log_prob(((1 + rho) / 2).float()).sum().double()
        values.append((float(module.correlation_log_prior()), float(expected)))
    (ours_a, beta_a), (ours_b, beta_b) = values
    assert ours_a - ours_b == pytest.approx(beta_a - beta_b, rel=1e-5)
    assert ours_a > ours_b  # positive correlations are favoured
    off = ICMKernelModule(2, 3, 1, options=ModelOptions(correlation_prior=False))
    assert float(off.correlation_log_prior()) == 0.0


def test_a_single_task_has_no_own_part() -> None:
    assert ICMKernelModule(3, 1, 1).own_kernel is None
