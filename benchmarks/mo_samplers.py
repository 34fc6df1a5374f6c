"""Samplers of the multi-objective and constrained benchmarks (same pattern as
:mod:`benchmarks.samplers`: a registry of seeded :class:`~benchmarks.samplers.SamplerSpec`).

Each factory reads the run's :class:`MOPriorContext`: the prior studies, the directions and,
for constrained problems, the ``constraints_func`` (Optuna's contract, values ``<= 0``
feasible). Optuna 5 deprecates ``constraints_func`` in favour of ``Trial.set_constraint``; the
harness passes it on purpose (the contract of issue 14) and silences that warning.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
import warnings

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from benchmarks.pareto import nondominated_mask
from benchmarks.samplers import PriorContext
from benchmarks.samplers import SamplerSpec


WARM_START_TOTAL = 10
ConstraintsFunc = Callable[[FrozenTrial], Sequence[float]]


@dataclass
class MOPriorContext(PriorContext):
    """Prior studies of one multi-objective or constrained run.

    Args:
        directions: One direction per objective, shared by priors and target.
        metric_names: Objective names (``study.set_metric_names``).
        constraints_func: The problem's ``constraints_func``, or ``None`` without constraints.
    """

    directions: list[str] = field(default_factory=list)
    metric_names: list[str] = field(default_factory=list)
    constraints_func: ConstraintsFunc | None = None


def _mo(priors: PriorContext) -> MOPriorContext:
    assert isinstance(priors, MOPriorContext), "multi-objective samplers need MOPriorContext"
    return priors


def _quiet(build: Callable[[], BaseSampler]) -> BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # constraints_func, deprecated in 5.0
        return build()


def _with_constraints(cls: Any, seed: int, priors: PriorContext) -> BaseSampler:
    func = _mo(priors).constraints_func
    if func is None:
        return cls(seed=seed)
    return _quiet(lambda: cls(seed=seed, constraints_func=func))


def pareto_configurations(priors: MOPriorContext) -> list[list[dict[str, Any]]]:
    """Each prior study's non-dominated (feasible, when constrained) configurations.

    Within a prior they are ordered from the middle of its front outwards (by the first
    objective: the middle, then alternately the next better and the next worse ones), so that
    one configuration per prior is a balanced trade-off and more reach the extremes.

    Args:
        priors: The run's prior context.
    """
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in priors.directions])
    fronts: list[list[dict[str, Any]]] = []
    for study in priors.studies():
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if priors.constraints_func is not None:
            done = [t for t in done if all(c <= 0 for c in t.constraints.values())]
        if not done:
            fronts.append([])
            continue
        y = signs * np.array([t.values for t in done], dtype=float)
        front = [done[i] for i in np.flatnonzero(nondominated_mask(y))]
        front.sort(key=lambda t: signs[0] * float(t.values[0]))
        middle = (len(front) - 1) // 2
        order = sorted(range(len(front)), key=lambda i: (abs(i - middle), i < middle))
        fronts.append([front[i].params for i in order])
    return fronts


def warm_start_configurations(priors: MOPriorContext) -> list[dict[str, Any]]:
    """Up to ``WARM_START_TOTAL`` distinct prior Pareto-front configurations, round-robin
    across the priors (each prior's first, then each one's second, ...).

    Args:
        priors: The run's prior context.
    """
    fronts = pareto_configurations(priors)
    chosen: list[dict[str, Any]] = []
    for rank in range(max((len(f) for f in fronts), default=0)):
        for front in fronts:
            if rank < len(front) and front[rank] not in chosen:
                chosen.append(front[rank])
    return chosen[:WARM_START_TOTAL]


def enqueue_prior_fronts(study: optuna.Study, priors: PriorContext) -> None:
    """Enqueue :func:`warm_start_configurations` in the target study.

    Args:
        study: The target study.
        priors: The run's prior context (:class:`MOPriorContext`).
    """
    for params in warm_start_configurations(_mo(priors)):
        study.enqueue_trial(params, skip_if_exists=True)


def _metabo_factory(seed: int, priors: PriorContext) -> BaseSampler:
    from optuna_metabo import MetaBOSampler

    ctx = _mo(priors)
    kwargs: dict[str, Any] = {"prior_storage": ctx.storage, "seed": seed}
    if ctx.constraints_func is not None:
        kwargs["constraints_func"] = ctx.constraints_func
    return _quiet(lambda: MetaBOSampler(ctx.names, **kwargs))


def _metabo_mo_check() -> str | None:
    """Whether MetaBOSampler runs a 2-objective study with a ``constraints_func`` (a probe of
    two trials without priors)."""
    try:
        from optuna_metabo import MetaBOSampler

        sampler = _quiet(lambda: MetaBOSampler(seed=0, constraints_func=lambda t: [0.0]))
        study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study.optimize(
                    lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)),
                    n_trials=2,
                )
        finally:
            optuna.logging.set_verbosity(verbosity)
    except Exception as exc:  # the sampler's multi-objective support has not landed
        message = str(exc).split("\n")[0][:160]
        return f"MetaBOSampler has no multi-objective/constraints support here ({message})"
    return None


MO_SAMPLERS: dict[str, SamplerSpec] = {
    "random": SamplerSpec(
        lambda seed, _p: optuna.samplers.RandomSampler(seed=seed),
        description="RandomSampler",
    ),
    "tpe": SamplerSpec(
        lambda seed, p: _with_constraints(optuna.samplers.TPESampler, seed, p),
        description="TPESampler (MOTPE on several objectives; constraints_func when constrained)",
    ),
    "gp": SamplerSpec(
        lambda seed, p: _with_constraints(optuna.samplers.GPSampler, seed, p),
        description="GPSampler (log EHVI on several objectives; constraints_func when "
        "constrained)",
    ),
    "warm_tpe": SamplerSpec(
        lambda seed, p: _with_constraints(optuna.samplers.TPESampler, seed, p),
        setup=enqueue_prior_fronts,
        uses_priors=True,
        description=f"TPE after enqueueing up to {WARM_START_TOTAL} Pareto-front configurations "
        "of the priors (feasible ones when constrained), round-robin across priors",
    ),
    "metabo": SamplerSpec(
        _metabo_factory,
        check=_metabo_mo_check,
        uses_priors=True,
        description="MetaBOSampler with the prior studies (constraints_func when constrained)",
    ),
}
MO_DEFAULT_SAMPLERS = ("random", "tpe", "gp", "warm_tpe", "metabo")
