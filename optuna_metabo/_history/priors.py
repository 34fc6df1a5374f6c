"""Matching prior trials to the target search space and encoding them as model inputs.

A prior study's parameters are lined up with the target's by name (``match_parameters``), then
its trials are encoded in the target's normalized space, duplicates averaged and the result
subsampled (``encode_task``). Nothing here reads a storage (see ``_history.prior_studies``).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
import math
from typing import Any
from typing import Protocol

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from optuna_metabo._core.pruned import Curve
from optuna_metabo._core.pruned import EMPTY_CURVE
from optuna_metabo._core.pruned import UnfinishedRows
from optuna_metabo._core.search_space import SearchSpace
from optuna_metabo._core.subsample import subsample_indices
from optuna_metabo._core.types import PriorRows
from optuna_metabo._vocabulary import EXTRA_DROPPED
from optuna_metabo._vocabulary import EXTRA_FIXED
from optuna_metabo._vocabulary import LACKED_DEFAULT
from optuna_metabo._vocabulary import LACKED_UNKNOWN


@dataclass
class PriorTask:
    """The completed trials of one prior study, in the sampler's minimization convention.

    Attributes:
        name: The study name.
        params: One parameter dictionary per usable trial.
        values: Objective values, sign-flipped so that lower is better, shape ``(n,)``.
        n_total: Number of trials in the study, of any state.
        distributions: Union of the distributions its trials used, by parameter name.
        curves: The intermediate values of each usable trial, if it has them.
        pruned_params: The parameters of each pruned trial (see ``_core.pruned``).
        pruned_curves: Their intermediate values.
        failed_params: The parameters of each failed trial.
    """

    name: str
    params: list[dict[str, Any]]
    values: np.ndarray
    n_total: int
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    curves: list[Curve] = field(default_factory=list)
    pruned_params: list[dict[str, Any]] = field(default_factory=list)
    pruned_curves: list[Curve] = field(default_factory=list)
    failed_params: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SkippedPrior:
    """A prior study that was not used and why."""

    name: str
    reason: str


@dataclass
class ParameterMatch:
    """How the parameters of a prior study line up with the target's.

    Attributes:
        shared: Target parameters the prior tuned too, matched by name (and by value).
        lacked: Target parameters the prior never tuned -> ``LACKED_DEFAULT`` or
            ``LACKED_UNKNOWN``.
        extra: Prior parameters the target does not tune -> ``EXTRA_DROPPED`` or
            ``EXTRA_FIXED``.
        notes: Why a parameter the prior has is still treated as lacked (another kind).
    """

    shared: list[str] = field(default_factory=list)
    lacked: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class EncodedPrior(PriorRows):
    """A prior task matched to the target space: the core's rows (see ``PriorRows``), and
    what the sampler reports about them.

    Attributes:
        n_available: Usable trials before subsampling.
        n_total: All trials in the study.
        match: How its parameters line up with the target's.
        params: The parameters of a trial at each row, all of them (also those outside the
            target space).
    """

    n_available: int = 0
    n_total: int = 0
    match: ParameterMatch = field(default_factory=ParameterMatch)
    params: list[dict[str, Any]] = field(default_factory=list)


def match_parameters(
    task: PriorTask, space: SearchSpace, prior_defaults: Mapping[str, Any]
) -> ParameterMatch | SkippedPrior:
    """Lines a prior study's parameters up with the target's, or says why it shares too little.

    A target parameter the prior tuned is shared when its values can be encoded in the target
    space (numbers for a numerical parameter, choices by value for a categorical one; an
    integer and a float parameter match). A prior that shares, counting ``prior_defaults``,
    fewer than half of the target's tuned parameters is skipped.

    Args:
        task: The prior task.
        space: The target search space.
        prior_defaults: Values at which prior studies held parameters they did not tune.
    """
    match = ParameterMatch()
    for name, target_dist in space.distributions.items():
        prior_dist = task.distributions.get(name)
        kind_note = None if prior_dist is None else _kind_mismatch(target_dist, prior_dist)
        if prior_dist is not None and kind_note is None:
            match.shared.append(name)
            continue
        if kind_note is not None:
            match.notes[name] = kind_note
        match.lacked[name] = LACKED_DEFAULT if name in prior_defaults else LACKED_UNKNOWN
    for name in sorted(set(task.distributions) - set(space.distributions)):
        match.extra[name] = EXTRA_FIXED if name in space.fixed_values else EXTRA_DROPPED
    n_known = len(match.shared) + sum(v == LACKED_DEFAULT for v in match.lacked.values())
    n_target = len(space.distributions)
    if 2 * n_known < n_target or (n_target and n_known == 0):
        lacked = ", ".join(sorted(match.lacked))
        return SkippedPrior(
            task.name,
            f"it shares only {n_known} of the target's {n_target} parameters (it lacks "
            f"{lacked}; give their values with prior_defaults to use it)",
        )
    return match


def _kind_mismatch(target: BaseDistribution, prior: BaseDistribution) -> str | None:
    """Why a prior parameter's values cannot be encoded for the target's, or None."""
    if isinstance(target, CategoricalDistribution):
        if isinstance(prior, (CategoricalDistribution, IntDistribution)):
            return None
        return "continuous in this prior, categorical in the target"
    if isinstance(prior, CategoricalDistribution) and not all(
        isinstance(c, (int, float)) and not isinstance(c, bool) for c in prior.choices
    ):
        return "categorical with non-numeric choices in this prior, numerical in the target"
    return None


class HasDistributions(Protocol):
    """A prior study or task: anything with the distributions its trials used."""

    distributions: dict[str, BaseDistribution]


def fixed_parameter_space(
    tasks: Sequence[HasDistributions], fixed_params: Mapping[str, Any], tuned: Sequence[str]
) -> dict[str, tuple[BaseDistribution, Any]]:
    """The ``fixed_params`` that some prior tuned, each with a range covering every prior's
    values and the fixed value: ``name -> (distribution, value)``.

    Args:
        tasks: The usable prior tasks.
        fixed_params: Values at which the target holds parameters it does not tune.
        tuned: The target's tuned parameters; a fixed parameter among them is not fixed.
    """
    space: dict[str, tuple[BaseDistribution, Any]] = {}
    for name, value in sorted(fixed_params.items()):
        dists = [t.distributions[name] for t in tasks if name in t.distributions]
        if name in tuned or not dists:
            continue
        covering = _covering_distribution(dists, value)
        if covering is not None:
            space[name] = (covering, value)
    return space


def _covering_distribution(
    dists: Sequence[BaseDistribution], value: Any
) -> BaseDistribution | None:
    """One distribution of the kind of ``dists[0]`` holding all of their values and ``value``."""
    first = dists[0]
    if isinstance(first, CategoricalDistribution):
        choices: list[Any] = []
        for dist in [d for d in dists if isinstance(d, CategoricalDistribution)]:
            choices += [c for c in dist.choices if c not in choices]
        return CategoricalDistribution(choices + ([value] if value not in choices else []))
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    numerical = [d for d in dists if isinstance(d, (FloatDistribution, IntDistribution))]
    low = min([float(d.low) for d in numerical] + [float(value)])
    high = max([float(d.high) for d in numerical] + [float(value)])
    log = bool(getattr(first, "log", False)) and low > 0
    return FloatDistribution(low, high, log=log) if high > low else None


def encode_task(
    task: PriorTask,
    space: SearchSpace,
    max_trials: int,
    rng: np.random.RandomState,
    prior_defaults: Mapping[str, Any] | None = None,
) -> EncodedPrior | SkippedPrior:
    """Encodes a prior task in the target space, subsampling to at most ``max_trials``.

    Trials whose values fall outside the target space (see ``SearchSpace.encode``) are
    dropped. Duplicate configurations are averaged into one point. Parameters the study never
    tuned take their ``prior_defaults`` value, or stay NaN in ``unknown_columns``.

    Args:
        task: The prior task.
        space: The target search space.
        max_trials: Cap on the points kept; half go to the best trials, half are spread.
        rng: Source of randomness for the spread half.
        prior_defaults: Values at which prior studies held parameters they did not tune.
    """
    defaults = dict(prior_defaults or {})
    match = match_parameters(task, space, defaults)
    if isinstance(match, SkippedPrior):
        return match
    held = {n: defaults[n] for n, how in match.lacked.items() if how == LACKED_DEFAULT}
    kept = set(match.shared) | {n for n, how in match.extra.items() if how == EXTRA_FIXED}

    def encode(params: dict[str, Any]) -> np.ndarray | None:
        return space.encode({**held, **{n: v for n, v in params.items() if n in kept}})

    inside = [i for i, params in enumerate(task.params) if encode(params) is not None]
    if not inside:
        return SkippedPrior(task.name, "none of its trials lies inside the target search space")
    rows = np.array([encode(task.params[i]) for i in inside])
    x, y, first = _merge_duplicates(rows, task.values[inside])
    keep = subsample_indices(y, max_trials, rng)
    unknown = [name for name, how in match.lacked.items() if how == LACKED_UNKNOWN]
    columns = np.concatenate([space.columns_of(n) for n in unknown] or [np.zeros(0, np.int64)])
    kept_trials = [inside[first[i]] for i in keep]
    curves = [task.curves[i] for i in kept_trials] if task.curves else []
    return EncodedPrior(
        name=task.name,
        x=x[keep],
        y=y[keep],
        unknown_columns=columns,
        unfinished=_encode_unfinished(task, encode, x, curves, max_trials, rng),
        n_available=len(y),
        n_total=task.n_total,
        match=match,
        params=[task.params[i] for i in kept_trials],
    )


def _encode_unfinished(
    task: PriorTask,
    encode: Callable[[dict[str, Any]], np.ndarray | None],
    measured_x: np.ndarray,
    curves: list[Curve],
    max_trials: int,
    rng: np.random.RandomState,
) -> UnfinishedRows | None:
    """The task's pruned and failed trials inside the target space and unlike any measured
    row, at most ``max_trials`` of them (a seeded random subset), or None if it has none or
    its completed trials lack curves."""
    params = task.pruned_params + task.failed_params
    if not params or len(curves) != len(measured_x):
        return None
    trial_curves = task.pruned_curves + [EMPTY_CURVE] * len(task.failed_params)
    is_failed = [False] * len(task.pruned_params) + [True] * len(task.failed_params)
    rows, kept_curves, kept_failed = [], [], []
    for trial_params, curve, failed in zip(params, trial_curves, is_failed):
        row = encode(trial_params)
        if row is not None:
            rows.append(row)
            kept_curves.append(curve)
            kept_failed.append(failed)
    if not rows:
        return None
    x = np.array(rows)  # (m, d)
    keys, measured = _row_keys(x), _row_keys(measured_x)
    fresh = np.flatnonzero(~(keys[:, None, :] == measured[None, :, :]).all(axis=2).any(axis=1))
    if len(fresh) > max_trials:
        fresh = np.sort(rng.permutation(fresh)[:max_trials])
    return UnfinishedRows(
        x[fresh], [kept_curves[i] for i in fresh], curves, np.array(kept_failed)[fresh]
    )


def parameter_handling(prior: EncodedPrior, prior_defaults: Mapping[str, Any]) -> dict[str, Any]:
    """How a prior's parameters were matched, as plain data for ``prior_summary()``.

    Args:
        prior: The encoded prior.
        prior_defaults: The sampler's ``prior_defaults``.
    """
    lacked: dict[str, dict[str, Any]] = {}
    for name, how in prior.match.lacked.items():
        lacked[name] = {"handling": how, "learned_value": None}
        if how != LACKED_UNKNOWN:
            lacked[name] = {"handling": how, "value": _finite_or_none(prior_defaults[name])}
        if name in prior.match.notes:
            lacked[name]["note"] = prior.match.notes[name]
    return {"lacked": lacked, "extra": dict(prior.match.extra)}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _merge_duplicates(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Averages the values of equal rows (NaN equal to NaN): the rows ``(u, d)``, their mean
    values ``(u,)`` and the index of each one's first occurrence ``(u,)``."""
    unique_key, first, inverse = np.unique(
        _row_keys(x), axis=0, return_index=True, return_inverse=True
    )
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=y, minlength=len(unique_key))
    counts = np.bincount(inverse, minlength=len(unique_key))
    return np.where(unique_key == _ABSENT, np.nan, unique_key), sums / counts, first


_ABSENT = -7.0  # outside every encoded range, so it stands for NaN while rows are compared


def _row_keys(x: np.ndarray) -> np.ndarray:
    """Rows ``(n, d)`` rounded for comparison, NaN replaced by ``_ABSENT``."""
    return np.where(np.isnan(x), _ABSENT, np.round(x, 9))
