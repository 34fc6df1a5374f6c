"""Pruned and failed trials as pseudo-observations of the final value they did not reach.

A pruned trial stopped at its last reported step ``s`` with value ``v``; a failed one (out of
memory, a NaN loss) at none. What they say about their configurations depends on the strategy
(``EngineSettings.pruned_trials``):

- ``"curve"``: the completed trials of the same task that reported a value at ``s`` or before
  (the latest such step) give a least-squares line ``final ~ a + b * value``; the pruned trial
  is imputed at the line's prediction, with the line's predictive variance. The fit is free
  of the intermediate values' scale and sign: a loss reported per epoch with an accuracy
  returned gives a negative slope, a curve unrelated to the final value a flat line whose
  variance is the spread of the final values. With fewer than ``_MIN_CURVE_FIT`` such
  completed trials, the ``"rank"`` rule applies.
- ``"rank"``: TPE's rule: a pruned trial ranks below every completed one, and one pruned
  earlier below one pruned later. It is imputed beyond the worst completed value by a quarter
  to three quarters of their standard deviation (latest to earliest step), with a variance of
  half that deviation squared. A failed trial always takes this rule, a whole deviation
  beyond the worst completed value, below every pruned one.
- ``"ignore"``: pruned and failed trials are no observations (they are still never proposed
  again, and failures still have their own model, see ``_core.multi_output``).

Values are a task's own, lower is better; curves are what the trials reported, unflipped.
Nothing is imputed before a task has two completed trials (their spread sets the scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math

import numpy as np


PRUNED_STRATEGIES = ("curve", "rank", "ignore")
_MIN_CURVE_FIT = 4
_MIN_COMPLETED = 2
# The imputed variance never falls below this share of the completed values' variance.
_VARIANCE_FLOOR = 0.01


@dataclass(frozen=True)
class Curve:
    """The finite intermediate values a trial reported, by increasing step.

    Attributes:
        steps: Steps ``(k,)``, increasing.
        values: Values ``(k,)`` as reported.
    """

    steps: np.ndarray
    values: np.ndarray

    def last(self) -> tuple[float, float] | None:
        """The last step and its value, or None for an empty curve."""
        if len(self.steps) == 0:
            return None
        return float(self.steps[-1]), float(self.values[-1])

    def at_or_before(self, step: float) -> float:
        """The value at the latest step at or before ``step``; NaN if there is none."""
        index = int(np.searchsorted(self.steps, step, side="right")) - 1
        return float(self.values[index]) if index >= 0 else float("nan")


EMPTY_CURVE = Curve(np.zeros(0), np.zeros(0))


@dataclass(frozen=True)
class UnfinishedRows:
    """A task's pruned and failed trials in the target space, with what imputing them takes.

    A failed trial (an exception, a NaN or infinite value) has an empty curve: it ranks below
    every pruned one, as if it had been pruned before its first step.

    Attributes:
        x: Inputs of its pruned and failed trials ``(m, d)``.
        curves: Their curves, one per row of ``x``.
        completed_curves: The curves of the task's completed trials, one per measured row
            (in row order).
        failed: Which rows are failed trials ``(m,)``; the others were pruned.
    """

    x: np.ndarray
    curves: list[Curve]
    completed_curves: list[Curve]
    failed: np.ndarray


def curve_of(intermediate_values: Mapping[int, float]) -> Curve:
    """A trial's curve from its ``intermediate_values``, in step order whatever order they
    were reported in; NaN and infinite values are left out (see ``n_skipped``)."""
    items = sorted(
        (float(step), float(value))
        for step, value in intermediate_values.items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    )
    return Curve(np.array([s for s, _ in items]), np.array([v for _, v in items]))


def n_skipped(intermediate_values: Mapping[int, float], curve: Curve) -> int:
    """How many of the reported intermediate values ``curve`` left out (NaN or infinite)."""
    return len(intermediate_values) - len(curve.steps)


def impute_pruned(
    final: np.ndarray,
    completed: list[Curve],
    pruned: list[Curve],
    strategy: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Imputed final values and their variances for a task's pruned trials.

    Args:
        final: The completed trials' values ``(n,)``, lower is better.
        completed: Their curves, one per completed trial.
        pruned: The pruned trials' curves ``(m)``.
        strategy: One of ``PRUNED_STRATEGIES``.

    Returns:
        Values ``(m,)`` and variances ``(m,)`` in the task's units; NaN values mark pruned
        trials left out (the strategy is ``"ignore"``, or too few trials completed).
    """
    if strategy not in PRUNED_STRATEGIES:
        raise ValueError(f"pruned_trials must be one of {PRUNED_STRATEGIES}, not {strategy!r}.")
    values, variances = np.full(len(pruned), np.nan), np.full(len(pruned), np.nan)
    if strategy == "ignore" or len(final) < _MIN_COMPLETED or not pruned:
        return values, variances
    rank_values, rank_variances = _rank_rule(final, pruned)
    for i, curve in enumerate(pruned):
        fitted = _curve_fit(final, completed, curve) if strategy == "curve" else None
        values[i], variances[i] = (
            fitted if fitted is not None else (rank_values[i], rank_variances[i])
        )
    floor = _VARIANCE_FLOOR * max(float(np.var(final)), 1e-12)
    return values, np.maximum(variances, floor)


def _rank_rule(final: np.ndarray, pruned: list[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """TPE's rule as values: beyond the worst completed value by a quarter (latest step) to
    three quarters (earliest) of their standard deviation, a whole one without any step."""
    spread = float(np.std(final)) or 1.0
    steps = np.array([(c.last() or (np.nan, 0.0))[0] for c in pruned])  # (m,)
    reported = np.isfinite(steps)
    offset = np.ones(len(steps))
    if reported.any():
        low, high = steps[reported].min(), steps[reported].max()
        earliness = (high - steps[reported]) / (high - low) if high > low else 0.0
        offset[reported] = 0.25 + 0.5 * earliness
    return float(np.max(final)) + spread * offset, np.full(len(pruned), (0.5 * spread) ** 2)


def _curve_fit(
    final: np.ndarray, completed: list[Curve], curve: Curve
) -> tuple[float, float] | None:
    """The least-squares prediction of a pruned trial's final value from its last value, and
    its predictive variance, or None with too few completed trials to fit."""
    last = curve.last()
    if last is None:
        return None
    step, value = last
    u = np.array([c.at_or_before(step) for c in completed])  # (n,)
    keep = np.isfinite(u)
    if keep.sum() < _MIN_CURVE_FIT:
        return None
    u, f = u[keep], final[keep]
    centred = u - u.mean()
    spread = float((centred**2).sum())
    slope = float((centred * (f - f.mean())).sum() / spread) if spread > 1e-12 else 0.0
    residual = f - f.mean() - slope * centred
    sigma2 = float((residual**2).sum()) / (len(f) - 2)
    leverage = 1.0 / len(f) + ((value - u.mean()) ** 2 / spread if spread > 1e-12 else 0.0)
    return float(f.mean() + slope * (value - u.mean())), sigma2 * (1.0 + leverage)
