"""Metrics of the learning-curve and failure runs: regret by cost spent, failures, repeats.

- **Cost**: a trial costs the epochs it trained (``lcbench_lc``) or one trial
  (``lcbench_fail*``); runs are sequential, so the cost spent when trial ``i`` finishes is the
  sum of the costs of trials ``0..i``.
- **Best completed value by cost c**: the best value among the COMPLETE trials (finite value)
  that finished with at most ``c`` spent; its normalized regret uses the fixed bounds of
  :mod:`benchmarks.regret` (1 before the first completed trial).
- **Failed trial**: a FAIL trial (an exception such as out-of-memory, or a NaN value, which
  Optuna records as FAIL), or a COMPLETE one with a non-finite value.
- **Repeat**: a trial whose configuration is that of an earlier PRUNED or failed trial of the
  same run: the same parameter names, and every value within ``REPEAT_TOLERANCE`` of the
  other's in units of its range (log range for log parameters; a categorical must match).
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial
from optuna.trial import TrialState


REPEAT_TOLERANCE = 1e-6


def is_failed(trial: FrozenTrial) -> bool:
    """Whether ``trial`` failed (FAIL, or COMPLETE with a non-finite value).

    Args:
        trial: A finished trial.
    """
    if trial.state == TrialState.FAIL:
        return True
    return trial.state == TrialState.COMPLETE and not all(
        v is not None and math.isfinite(v) for v in trial.values or [math.nan]
    )


def is_completed(trial: FrozenTrial) -> bool:
    """Whether ``trial`` is COMPLETE with a finite value.

    Args:
        trial: A finished trial.
    """
    return trial.state == TrialState.COMPLETE and not is_failed(trial)


def _unit(value: Any, distribution: BaseDistribution) -> float:
    """``value`` in units of its distribution's range (a categorical's choice index)."""
    if isinstance(distribution, CategoricalDistribution):
        return float(distribution.to_internal_repr(value))
    assert isinstance(distribution, (FloatDistribution, IntDistribution))
    low, high, x = float(distribution.low), float(distribution.high), float(value)
    if distribution.log:
        low, high, x = math.log(low), math.log(high), math.log(x)
    return (x - low) / (high - low) if high > low else 0.0


def _key(trial: FrozenTrial) -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(sorted(trial.params))
    units = [_unit(trial.params[n], trial.distributions[n]) for n in names]
    return names, np.array(units, dtype=float)


def repeats(trials: Sequence[FrozenTrial], tolerance: float = REPEAT_TOLERANCE) -> list[int]:
    """Numbers of the trials that repeat an earlier pruned or failed trial's configuration.

    Args:
        trials: The trials of one run, in order.
        tolerance: Largest difference, in units of a parameter's range, that is the same value.
    """
    seen: list[tuple[tuple[str, ...], np.ndarray]] = []
    found = []
    for trial in trials:
        if not trial.params:
            continue
        names, units = _key(trial)
        if any(
            n == names and np.max(np.abs(u - units), initial=0.0) <= tolerance for n, u in seen
        ):
            found.append(trial.number)
        if trial.state == TrialState.PRUNED or is_failed(trial):
            seen.append((names, units))
    return found


def best_completed_by_cost(
    trials: Sequence[FrozenTrial], costs: np.ndarray, budget: int, direction: str
) -> np.ndarray:
    """Best completed value once each cost ``1..budget`` is spent, shape ``(budget,)``; NaN
    before the first completed trial.

    Args:
        trials: The trials of one run, in order.
        costs: Each trial's cost, ``(len(trials),)``.
        budget: The last cost to evaluate.
        direction: ``"minimize"`` or ``"maximize"``.
    """
    sign = -1.0 if direction == "maximize" else 1.0
    spent = np.cumsum(costs)  # (n,) cost spent when each trial finished
    best = np.full(budget, np.inf)
    for trial, at in zip(trials, spent):
        if is_completed(trial) and at <= budget:
            start = max(int(math.ceil(at)) - 1, 0)
            best[start:] = np.minimum(best[start:], sign * float(trial.value))  # type: ignore[arg-type]
    return np.where(np.isfinite(best), sign * best, np.nan)


def failed_count(trials: Sequence[FrozenTrial], start: int = 0) -> int:
    """Failed trials among ``trials[start:]``.

    Args:
        trials: The trials of one run, in order.
        start: Trials before it are not counted (e.g. the prior design).
    """
    return sum(is_failed(t) for t in trials[start:])
