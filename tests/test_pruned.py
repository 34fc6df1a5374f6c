"""Pruned and failed trials as pseudo-observations (``_pruned``)."""

from __future__ import annotations

import numpy as np
import pytest

from optuna_metabo._core.pruned import Curve
from optuna_metabo._core.pruned import curve_of
from optuna_metabo._core.pruned import EMPTY_CURVE
from optuna_metabo._core.pruned import impute_pruned
from optuna_metabo._core.pruned import n_skipped


def _curve(final: float, steps: range = range(1, 11), scale: float = 1.0) -> Curve:
    """A learning curve that approaches ``final`` (lower is better) from above."""
    values = [scale * (final + 1.0 / step) for step in steps]
    return curve_of(dict(zip(steps, values)))


def test_curve_sorts_steps_and_leaves_out_non_finite_values() -> None:
    reported = {3: 0.3, 1: 0.1, 2: float("nan"), 5: float("inf"), 4: 0.4}
    curve = curve_of(reported)
    np.testing.assert_array_equal(curve.steps, [1, 3, 4])
    np.testing.assert_array_equal(curve.values, [0.1, 0.3, 0.4])
    assert n_skipped(reported, curve) == 2
    assert curve.at_or_before(3.5) == 0.3 and np.isnan(curve.at_or_before(0))
    assert curve_of({}).last() is None


def test_curve_strategy_recovers_the_final_value_from_an_early_one() -> None:
    finals = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    completed = [_curve(f) for f in finals]
    pruned = [_curve(f, range(1, 4)) for f in (0.2, 0.8)]  # stopped at step 3
    values, variances = impute_pruned(finals, completed, pruned, "curve")
    np.testing.assert_allclose(values, [0.2, 0.8], atol=1e-9)  # the curves are exact lines
    assert np.all(variances > 0)  # a pseudo-observation always carries some variance


def test_curve_strategy_is_free_of_the_curves_scale_and_sign() -> None:
    """A loss reported each epoch and an accuracy returned: the fit flips the sign."""
    finals = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    as_reported = [_curve(f, scale=-50.0) for f in finals]  # another scale, other direction
    pruned = [_curve(0.2, range(1, 4), scale=-50.0), _curve(0.8, range(1, 4), scale=-50.0)]
    values, _ = impute_pruned(finals, as_reported, pruned, "curve")
    np.testing.assert_allclose(values, [0.2, 0.8], atol=1e-9)


def test_an_unrelated_curve_imputes_the_mean_with_the_spread_of_the_finals() -> None:
    rng = np.random.RandomState(0)
    finals = rng.uniform(size=30)
    noise = [curve_of({1: float(v)}) for v in rng.uniform(size=30)]
    values, variances = impute_pruned(finals, noise, [curve_of({1: 0.5})], "curve")
    assert abs(values[0] - finals.mean()) < 0.1
    assert variances[0] == pytest.approx(np.var(finals), rel=0.4)


def test_rank_rule_puts_pruned_trials_below_completed_ones_and_earlier_steps_lower() -> None:
    finals = np.array([0.1, 0.2, 0.4])
    pruned = [_curve(0.0, range(1, 9)), _curve(0.0, range(1, 2)), EMPTY_CURVE]
    values, variances = impute_pruned(finals, [EMPTY_CURVE] * 3, pruned, "rank")
    assert finals.max() < values[0] < values[1] < values[2]
    assert np.all(variances > 0)


def test_curve_strategy_falls_back_to_the_rank_rule_without_enough_curves() -> None:
    finals = np.array([0.1, 0.2, 0.4])
    pruned = [_curve(0.0, range(1, 4))]
    curve_values, _ = impute_pruned(finals, [_curve(f) for f in finals], pruned, "curve")
    rank_values, _ = impute_pruned(finals, [_curve(f) for f in finals], pruned, "rank")
    np.testing.assert_allclose(curve_values, rank_values)


def test_nothing_is_imputed_before_two_completed_trials_or_when_ignored() -> None:
    pruned = [_curve(0.5, range(1, 3))]
    values, _ = impute_pruned(np.array([0.3]), [_curve(0.3)], pruned, "curve")
    assert np.isnan(values).all()
    values, _ = impute_pruned(np.array([0.3, 0.4]), [_curve(0.3)] * 2, pruned, "ignore")
    assert np.isnan(values).all()
    with pytest.raises(ValueError, match="pruned_trials"):
        impute_pruned(np.array([0.3, 0.4]), [], pruned, "median")
