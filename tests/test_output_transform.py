"""Per-task output transforms: standardization, the Gaussian copula, and the way back."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import optuna
import pytest
from scipy.stats import norm

from optuna_metabo import MetaBOSampler
from optuna_metabo._core.output_transform import affine_back
from optuna_metabo._core.output_transform import transform_task_values


finite_values = st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=40)


def test_standardize_gives_zero_mean_and_unit_variance() -> None:
    values = np.array([3.0, 5.0, 9.0, 11.0])
    out = transform_task_values(values, "standardize")
    assert out.mean() == pytest.approx(0.0, abs=1e-12)
    assert out.std() == pytest.approx(1.0)
    np.testing.assert_allclose(out, (values - 7.0) / math.sqrt(10.0))


def test_constant_and_empty_tasks_do_not_divide_by_zero() -> None:
    for kind in ("standardize", "copula"):
        constant = transform_task_values(np.full(5, 2.5), kind)
        assert np.all(np.isfinite(constant)) and np.ptp(constant) == 0.0
        empty = transform_task_values(np.zeros(0, dtype=int), kind)
        assert empty.shape == (0,) and empty.dtype == float
    np.testing.assert_array_equal(transform_task_values(np.full(5, 2.5), "standardize"), 0.0)


def test_copula_maps_ranks_to_normal_quantiles() -> None:
    values = np.array([10.0, -3.0, 7.0, 0.5])  # ranks 4, 1, 3, 2
    out = transform_task_values(values, "copula")
    np.testing.assert_allclose(out, norm.ppf((np.array([4, 1, 3, 2]) - 0.5) / 4))
    np.testing.assert_allclose(np.sort(out), -np.sort(out)[::-1])  # symmetric about 0


def test_copula_ignores_the_size_of_an_outlier_and_shares_ties() -> None:
    base = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    outlier = base.copy()
    outlier[-1] = 1e9
    np.testing.assert_array_equal(
        transform_task_values(base, "copula"), transform_task_values(outlier, "copula")
    )
    # Standardizing lets the outlier squash every other value together.
    squashed = transform_task_values(outlier, "standardize")[:-1]
    assert np.ptp(squashed) < 1e-6
    tied = transform_task_values(np.array([1.0, 2.0, 2.0, 3.0]), "copula")
    assert tied[1] == tied[2] == pytest.approx(0.0)


@given(st.lists(st.integers(-1000, 1000), min_size=2, max_size=40))
@settings(max_examples=50, deadline=None)
def test_copula_is_invariant_under_increasing_maps(values: list[int]) -> None:
    y = np.array(values, dtype=float)
    out = transform_task_values(y, "copula")
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) < 4.0)
    np.testing.assert_allclose(transform_task_values(np.exp(y / 100) - 3.0, "copula"), out)
    # It keeps the order: a lower value never maps above a higher one.
    order = np.argsort(y, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)


def test_unknown_transform_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="output_transform must be one of"):
        transform_task_values(np.ones(3), "rank")
    with pytest.raises(ValueError, match="output_transform must be one of"):
        MetaBOSampler(output_transform="rank")


@given(finite_values, st.floats(-100, 100), st.floats(0.01, 100))
@settings(max_examples=50, deadline=None)
def test_affine_back_recovers_raw_units(values: list[float], offset: float, scale: float) -> None:
    standardized = np.array(values) / 1e6
    if np.ptp(standardized) < 1e-6:
        return
    found_offset, found_scale = affine_back(standardized, offset + scale * standardized)
    assert found_offset == pytest.approx(offset, abs=1e-6 * (1 + abs(offset)))
    assert found_scale == pytest.approx(scale, rel=1e-6)


def test_affine_back_with_too_few_distinct_values() -> None:
    assert affine_back(np.zeros(0), np.zeros(0)) == (0.0, 1.0)
    assert affine_back(np.array([0.3]), np.array([4.0])) == (4.0, 1.0)
    assert affine_back(np.zeros(3), np.array([1.0, 2.0, 6.0])) == (3.0, 1.0)


def test_sampler_with_the_copula_transform_models_heavy_tailed_priors() -> None:
    """The copula runs end to end: priors with a heavy tail, model proposals with finite
    predictions in the objective's units."""

    def objective(shift: float) -> optuna.study.study.ObjectiveFuncType:
        def f(trial: optuna.Trial) -> float:
            x = trial.suggest_float("x", -2.0, 2.0)
            return math.exp(3.0 * abs(x - shift))  # up to e^12: a heavy right tail

        return f

    storage = optuna.storages.InMemoryStorage()
    for i, shift in enumerate((0.4, 0.6)):
        prior = optuna.create_study(
            storage=storage, study_name=f"p{i}", sampler=optuna.samplers.RandomSampler(seed=i)
        )
        prior.optimize(objective(shift), n_trials=20)
    sampler = MetaBOSampler(
        prior_storage=storage, seed=0, output_transform="copula", n_prior_design_trials=2
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective(0.5), n_trials=6)
    sources = [t.user_attrs["metabo:source"] for t in study.trials]
    assert sources[:2] == ["prior_design"] * 2 and set(sources[2:]) <= {"model"}
    assert all(math.isfinite(t.user_attrs["metabo:predicted_mean"]) for t in study.trials[2:])
    assert study.best_value < math.exp(3.0 * 0.3)  # within 0.3 of the optimum
