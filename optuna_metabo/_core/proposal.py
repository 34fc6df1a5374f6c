"""The numeric core: from normalized arrays of priors and target to the next point.

It knows nothing about Optuna studies. Data flows one way: per-task output transform -> ICM GP
fit -> acquisition function -> optimizer -> a normalized point with its predictions.

Phases, by the number ``n`` of completed target trials:

- ``n < n_prior_design_trials`` (prior design): the best configurations of the prior tasks are
  candidates, chosen one by one as a greedy portfolio (``PortfolioCoverage``): first the one
  best on average over the prior tasks, then the one that best covers the prior tasks where the
  configurations already tried are poor, with prior tasks weighted by how well they rank the
  target's results so far.
- afterwards: log expected improvement on the target, maximized over the whole space with
  starts at the best prior and target configurations. From ``EngineSettings.guard_start``
  target trials on, a GP on the target alone replaces the ICM for the trial whenever it
  predicts the target's own trials clearly better (leave-one-out, by more than
  ``_TARGET_ONLY_MARGIN`` nats per trial): a guard against negative transfer.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import math
from typing import Any

import numpy as np
import torch

from optuna_metabo._core.acquisition import LogExpectedImprovement
from optuna_metabo._core.acquisition import PortfolioCoverage
from optuna_metabo._core.model import compatible_state
from optuna_metabo._core.model import fit_icm_gp
from optuna_metabo._core.model import ICMGaussianProcess
from optuna_metabo._core.model import ICMKernelModule
from optuna_metabo._core.model import TrainingData
from optuna_metabo._core.model import with_slot_values
from optuna_metabo._core.optimize import best_candidate
from optuna_metabo._core.optimize import evaluate
from optuna_metabo._core.optimize import optimize_acquisition
from optuna_metabo._core.optimize import rows_not_in
from optuna_metabo._core.output_transform import affine_back
from optuna_metabo._core.output_transform import transform_task
from optuna_metabo._core.pruned import impute_pruned
from optuna_metabo._core.pruned import UnfinishedRows
from optuna_metabo._core.search_space import SearchSpace
from optuna_metabo._core.subsample import subsample_indices
from optuna_metabo._core.types import EngineSettings
from optuna_metabo._core.types import PriorRows
from optuna_metabo._core.types import ProposalSource


@dataclass(frozen=True)
class PosteriorView:
    """What it takes to draw the target's posterior as the proposal saw it (for plots).

    Attributes:
        model: The GP the choice was made with (conditioned on pending points too).
        target_index: The target's task index in ``model``.
        best: The target incumbent in the model's standardized units.
        offset: Raw target value ~ ``offset + scale * standardized`` (see ``affine_back``);
            before two target values, fitted to the pooled prior values instead.
        scale: See ``offset``.
    """

    model: ConditionalView
    target_index: int
    best: float
    offset: float
    scale: float


@dataclass
class Proposal:
    """The next point and why it was chosen.

    Attributes:
        x: Normalized point ``(d,)``.
        mean: Predicted target value in raw units, lower is better; NaN before the target
            has two values (its units are unknown until then).
        std: Predicted standard deviation in raw units; NaN when ``mean`` is.
        acquisition: Acquisition value at ``x``.
        source: How the point was chosen.
        similarity: Learned correlation of each prior task with the target, by name.
        held_values: For each prior, the learned normalized value of each column it never
            tuned, by prior name and column.
        view: The posterior behind the choice, for plots (single objective, no constraint).
        objective_means: With several outputs, the predicted value of each objective in raw
            units, lower is better ``(k,)``; NaN where the target's units are unknown.
        objective_stds: Their predicted standard deviations ``(k,)``.
        feasibility: With constraints, the predicted probability that ``x`` is feasible.
        failure_probability: Where failures are modelled, the predicted probability that a
            trial at ``x`` fails.
        n_imputed: How many of the target's pruned and failed trials the model used as
            pseudo-observations (see ``_core.pruned``).
    """

    x: np.ndarray
    mean: float
    std: float
    acquisition: float
    source: ProposalSource
    similarity: dict[str, float] = field(default_factory=dict)
    held_values: dict[str, dict[int, float]] = field(default_factory=dict)
    view: PosteriorView | None = None
    objective_means: np.ndarray | None = None
    objective_stds: np.ndarray | None = None
    feasibility: float = math.nan
    failure_probability: float = math.nan
    n_imputed: int = 0


def n_imputed(data: TrainingData, task: int) -> int:
    """How many rows of ``task`` are pseudo-observations (imputed pruned or failed trials)."""
    return int(((data.task == task) & ~measured_rows(data, task)).sum())


def _task_rows(
    x: np.ndarray, y: np.ndarray, unfinished: UnfinishedRows | None, strategy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One task's measured rows, then its pruned and failed trials imputed (see ``_core.pruned``):
    inputs ``(r, d)``, values ``(r,)`` and known extra variances ``(r,)``, zero where measured."""
    if unfinished is None or len(unfinished.x) == 0:
        return x, y, np.zeros(len(y))
    values, variances = impute_pruned(y, unfinished.completed_curves, unfinished.curves, strategy)
    keep = np.isfinite(values)
    return (
        np.concatenate([x, unfinished.x[keep]]),
        np.concatenate([y, values[keep]]),
        np.concatenate([np.zeros(len(y)), variances[keep]]),
    )


def _training_data(
    priors: Sequence[PriorRows],
    target_x: np.ndarray,
    target_y: np.ndarray,
    settings: EngineSettings,
    target_unfinished: UnfinishedRows | None = None,
) -> TrainingData:
    """Stacks priors (tasks ``0..P-1``) and the target (task ``P``), each task's measured rows
    first, then its imputed pruned and failed trials; absent entries get slots.

    A NaN is an inactive coordinate (slot = its column), except in a prior's unknown columns,
    where each (prior, column) pair gets an unknown-value slot of its own.
    """
    tasks = [(p.x, p.y, p.unfinished) for p in priors] + [(target_x, target_y, target_unfinished)]
    rows = [_task_rows(*t, settings.pruned_trials) for t in tasks]
    xs = [r[0] for r in rows]
    scaled = [transform_task(y, noise, settings.output_transform) for _, y, noise in rows]
    ys, noises = [v for v, _ in scaled], [n for _, n in scaled]
    task = np.concatenate([np.full(len(x), i) for i, x in enumerate(xs)])
    x = np.concatenate(xs)  # (n, d)
    dim = x.shape[1]
    slot = np.where(np.isnan(x), np.arange(dim)[None, :], -1)  # (n, d): inactive by default
    pairs = [(i, int(c)) for i, p in enumerate(priors) for c in p.unknown_columns]
    for k, (i, column) in enumerate(pairs):
        slot[task == i, column] = dim + k
    inactive = np.flatnonzero((slot == np.arange(dim)[None, :]).any(axis=0))  # (k,)
    return TrainingData(
        x=x,
        task=task,
        y=np.concatenate(ys),
        n_tasks=len(xs),
        slot=slot,
        n_unknown=len(pairs),
        noise=np.concatenate(noises),
        indicator_columns=inactive if settings.inactive_inputs == "indicator" else None,
    )


def measured_rows(data: TrainingData, task: int) -> np.ndarray:
    """Mask ``(n,)`` of the rows of ``task`` that are measured, not imputed."""
    measured = data.task == task
    return measured if data.noise is None else measured & (data.noise == 0)


class ConditionalView:
    """The model seen through the search space's conditions (an input transform).

    The optimizer proposes complete rows; the coordinates that the rows' parent choices
    switch off become NaN, which the model reads as inactive.

    Args:
        model: The fitted GP.
        space: The target search space, with its conditions.
    """

    def __init__(self, model: ICMGaussianProcess, space: SearchSpace) -> None:
        self.model, self.space = model, space
        self.x = model.x

    def posterior(self, x: torch.Tensor, task_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance ``(m,)`` at complete rows ``x`` ``(m, d)``."""
        if self.space.conditions:
            inactive = self.space.inactive_mask(x.detach().cpu().numpy())  # (m, d)
            x = torch.where(torch.as_tensor(inactive, device=x.device), torch.nan, x)
        return self.model.posterior(x, task_index)


def _fit_subset(data: TrainingData, max_points: int) -> np.ndarray:
    """The rows the hyperparameters are fitted on: the target's, up to half of ``max_points``
    (all of it without priors), and an even share of the rest for each prior task.

    Where a task has more rows than its share, about half of those kept are its best and half
    a spread, drawn with a fixed seed in a prefix-stable order (see ``subsample_indices``):
    from one trial to the next the subset barely changes, so the fit warm-started from the
    previous one converges in a few steps instead of chasing a reshuffled objective. The
    capped target keeps a long study's cost per trial bounded; the GP is still conditioned
    on every row.
    """
    target = data.n_tasks - 1
    n_target = int((data.task == target).sum())
    target_share = min(n_target, max_points // 2 if target else max_points)
    per_task = max(4, (max_points - target_share) // max(target, 1))
    rows = []
    for t in range(data.n_tasks):
        idx = np.flatnonzero(data.task == t)
        share = target_share if t == target else per_task
        rows.append(idx[subsample_indices(data.y[idx], share, np.random.RandomState(0))])
    return np.concatenate(rows)


def _prior_candidates(
    model: ICMGaussianProcess,
    data: TrainingData,
    per_task: int,
    space: SearchSpace,
    rng: np.random.RandomState,
) -> np.ndarray:
    """The ``per_task`` best configurations of each prior task, clipped and snapped: ``(k, d)``.

    A coordinate the prior never tuned takes its learned value (the model's filled inputs).
    Where the target holds parameters fixed (``fixed_params``), snapping moves the prior's
    configurations onto the fixed value, where they need not be good; each prior task then
    also offers the minimizer of its posterior mean at the fixed value.
    """
    filled = model.inputs[: len(data.y)]  # (n, d)
    rows = []
    for t in range(data.n_tasks - 1):
        index = np.flatnonzero(measured_rows(data, t))
        best = space.snap(np.clip(filled[index[np.argsort(data.y[index])[:per_task]]], 0, 1))
        rows.append(best)
        if len(space.fixed_columns):
            rows.append(_prior_mean_minimizer(ConditionalView(model, space), t, best, space, rng))
    if not rows:
        return np.zeros((0, space.dim))
    return np.unique(np.concatenate(rows), axis=0)


def _prior_mean_minimizer(
    model: ConditionalView,
    task: int,
    starts: np.ndarray,
    space: SearchSpace,
    rng: np.random.RandomState,
) -> np.ndarray:
    """The point of ``space`` where prior ``task``'s posterior mean is lowest: ``(1, d)``."""

    def negative_mean(x: torch.Tensor) -> torch.Tensor:
        return -model.posterior(x, task)[0]

    x, _ = optimize_acquisition(negative_mean, space, starts, rng, n_sobol=64, n_local=2)
    return x[None, :]


_PAIR_AGREEMENT = 0.75
# Nats per target trial by which the target-only GP's leave-one-out log density must beat the
# ICM's. The ICM's shared hyperparameters fit the target a little worse even where the priors
# help (on LCBench by 0.1-0.6 nats per trial), so only a clear gap means they mislead.
_TARGET_ONLY_MARGIN = 1.0
# Fits between two held-value restarts from an unchanged target best: new target points can
# move the likelihood's preferred mode, and the warm start alone stays in the old one.
_HELD_RESTART_EVERY = 2


def _prior_means(model: ConditionalView, x: np.ndarray, tasks: list[int]) -> np.ndarray:
    """Posterior means of ``tasks`` at ``x`` ``(m, d)``: ``(m, len(tasks))``."""
    if len(x) == 0:
        return np.zeros((0, len(tasks)))
    with torch.no_grad():
        points = torch.as_tensor(x, dtype=model.x.dtype, device=model.x.device)
        return np.stack([model.posterior(points, t)[0].cpu().numpy() for t in tasks], axis=1)


def _pair_counts(prior_means: np.ndarray, target_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many pairs of target trials each prior task orders as the target did, and how many
    the other way: ``(P,)`` each (tied target pairs count in neither)."""
    i, j = np.triu_indices(len(target_y), k=1)
    target_order = np.sign(target_y[i] - target_y[j])  # (pairs,)
    prior_order = np.sign(prior_means[i] - prior_means[j])  # (pairs, P)
    ordered = target_order[:, None] != 0
    n_agree = ((prior_order == target_order[:, None]) & ordered).sum(axis=0)
    n_disagree = ((prior_order == -target_order[:, None]) & ordered).sum(axis=0)
    return n_agree, n_disagree


def ranking_log_odds(prior_means: np.ndarray, target_y: np.ndarray) -> float:
    """Log odds that one of the prior tasks ranks the target's trials as the target did, with
    each pair right with probability ``_PAIR_AGREEMENT``, against a random ranking (each pair
    right with probability one half); the prior tasks are equally likely a priori.

    Args:
        prior_means: Prior tasks' posterior means at the target's trials ``(n, P)``.
        target_y: The target's values ``(n,)``, lower is better.
    """
    n_agree, n_disagree = _pair_counts(prior_means, target_y)
    log_each = n_agree * math.log(_PAIR_AGREEMENT) + n_disagree * math.log(1 - _PAIR_AGREEMENT)
    log_random = (n_agree + n_disagree) * math.log(0.5)
    return float(np.logaddexp.reduce(log_each - log_random) - math.log(len(log_each)))


def task_weights(prior_means: np.ndarray, target_y: np.ndarray) -> np.ndarray:
    """How likely each prior task is to rank the target's trials as the target did: ``(P,)``.

    Each pair of target trials that a prior task's mean orders the same way multiplies its
    weight by ``_PAIR_AGREEMENT``, each pair ordered the other way by one minus that (a
    ranking likelihood, as in RGPE; Feurer et al., 2018).

    Args:
        prior_means: Prior tasks' posterior means at the target's trials ``(n, P)``.
        target_y: The target's values ``(n,)``, lower is better.
    """
    n_agree, n_disagree = _pair_counts(prior_means, target_y)
    log_weight = n_agree * math.log(_PAIR_AGREEMENT) + n_disagree * math.log(1 - _PAIR_AGREEMENT)
    weight = np.exp(log_weight - log_weight.max())
    return weight / weight.sum()


def _portfolio(
    model: ConditionalView, data: TrainingData, others_x: np.ndarray
) -> PortfolioCoverage:
    """The greedy-portfolio design criterion given the target's completed trials and the
    others it has tried or is trying ``(p, d)`` (running, pruned and failed)."""
    target = data.n_tasks - 1
    tasks = list(range(target))
    measured = measured_rows(data, target)
    target_x, target_y = data.x[measured], data.y[measured]
    best = np.array([data.y[measured_rows(data, t)].min() for t in tasks])  # (P,)
    tried = np.concatenate([target_x, others_x])
    means = _prior_means(model, tried, tasks)  # (n + p, P)
    covered = (means - best).min(axis=0) if len(tried) else np.full(len(tasks), np.inf)
    weights = task_weights(means[: len(target_y)], target_y)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=model.x.dtype, device=model.x.device)

    return PortfolioCoverage(model, tasks, tensor(weights), tensor(best), tensor(covered))


def _target_best_x(data: TrainingData) -> np.ndarray | None:
    """The target's best measured configuration ``(d,)``; None before two target points."""
    target = measured_rows(data, data.n_tasks - 1)
    if target.sum() < 2:
        return None
    return data.x[target][np.argmin(data.y[target])]


def _held_value_restarts(
    data: TrainingData, state: Mapping[str, Any] | None, rank: int, best: np.ndarray | None
) -> list[dict[str, Any]]:
    """A second start for fits that learn held values: every unknown value at the target's
    best configuration ``best`` ``(d,)``, and the task covariance back at its positive
    default. A held value and the sign of a task's correlation can explain a few target points
    about equally well the wrong way round (a prior's good region placed where the target is
    poor, with a negative correlation), and a warm start stays in whichever mode it found
    first; the marginal likelihood picks between the two.
    """
    if state is None or data.slot is None or data.n_unknown == 0 or best is None:
        return []
    unknown = np.unique(data.slot[data.slot >= data.x.shape[1]])  # (u,)
    columns = np.array([np.flatnonzero((data.slot == k).any(axis=0))[0] for k in unknown])
    values = np.nan_to_num(best[columns], nan=0.5)
    n_indicators = 0 if data.indicator_columns is None else len(data.indicator_columns)
    dim = data.x.shape[1] + n_indicators
    fresh = ICMKernelModule(dim, data.n_tasks, rank, data.n_unknown).state_dict()
    default_tasks = {k: v for k, v in fresh.items() if k.startswith("task_kernel.")}
    return [with_slot_values({**state, **default_tasks}, unknown + n_indicators, values)]


def _with_target_correlations_negated(state: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``state`` whose target correlates with every prior task the other way: a
    start for the fit once the target's results say the priors rank it backwards (a metric
    optimized in the other direction)."""
    factor = state["task_kernel.covar_factor"].clone()  # (T, rank)
    factor[-1] = -factor[-1]
    return {**state, "task_kernel.covar_factor": factor}


def _untuned_columns(priors: Sequence[PriorRows], dim: int) -> np.ndarray:
    """Columns that no prior tuned (each learned a held value for them): ``(k,)``."""
    if not priors:
        return np.zeros(0, dtype=np.int64)
    untuned = np.ones(dim, dtype=bool)
    for prior in priors:
        known = np.ones(dim, dtype=bool)
        known[prior.unknown_columns] = False
        untuned &= ~known
    return np.flatnonzero(untuned)


def _complete_untuned(
    acqf: LogExpectedImprovement,
    candidates: np.ndarray,
    columns: np.ndarray,
    space: SearchSpace,
    rng: np.random.RandomState,
    n_options: int = 64,
) -> np.ndarray:
    """Prior configurations ``(k, d)`` with the ``columns`` no prior tuned set by the target's
    acquisition: the priors say nothing about them, so the target's own data decides."""
    options = space.sample_sobol(n_options, rng)[:, columns]  # (o, c)
    trial = np.repeat(candidates, n_options, axis=0)  # (k * o, d)
    trial[:, columns] = np.tile(options, (len(candidates), 1))
    values = evaluate(acqf, trial).reshape(len(candidates), n_options)  # (k, o)
    best = trial.reshape(len(candidates), n_options, -1)[
        np.arange(len(candidates)), values.argmax(axis=1)
    ]
    return np.unique(best, axis=0)


def _first_of_their_branches(
    space: SearchSpace,
    candidates: np.ndarray,
    data: TrainingData,
    model: ConditionalView,
    tried: np.ndarray,
) -> np.ndarray:
    """The candidates ``(k, d)`` that take a categorical choice some prior's best
    configuration took and no tried configuration ``(t, d)`` took yet; all of them if none
    does. Over a branch choice, the design covers the branches that won on the priors."""
    filled = model.model.inputs[: len(data.y)]
    incumbents = []
    for task in range(data.n_tasks - 1):
        rows = np.flatnonzero(measured_rows(data, task))
        incumbents.append(filled[rows[np.argmin(data.y[rows])]])
    keep = np.zeros(len(candidates), dtype=bool)
    for columns in space.categorical_columns():
        uncovered = set(_choices(np.array(incumbents), columns)) - set(_choices(tried, columns))
        uncovered.discard(-1)
        keep |= np.isin(_choices(candidates, columns), list(uncovered))
    return candidates[keep] if keep.any() else candidates


def _choices(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The chosen index of a one-hot categorical parameter in each row ``(n,)``; -1 where it
    is absent or inactive."""
    block = np.nan_to_num(rows[:, columns], nan=-1.0).reshape(len(rows), len(columns))
    return np.where(block.max(axis=1) > 0.5, block.argmax(axis=1), -1)


def canonical_rows(space: SearchSpace, rows: np.ndarray) -> np.ndarray:
    """Rows ``(n, d)`` with every absent or inactive coordinate at 0.5, so that two rows that
    differ only where the objective does not look compare equal."""
    rows = np.nan_to_num(np.asarray(rows, dtype=float), nan=0.5)
    return np.where(space.inactive_mask(rows), 0.5, rows)


def held_values(
    model: ICMGaussianProcess, priors: Sequence[PriorRows]
) -> dict[str, dict[int, float]]:
    """The learned value of each column a prior never tuned, by prior name and column."""
    filled = model.inputs
    held: dict[str, dict[int, float]] = {}
    start = 0
    for prior in priors:
        if len(prior.unknown_columns):
            held[prior.name] = {int(c): float(filled[start, c]) for c in prior.unknown_columns}
        start += len(prior.y)
    return held


@contextmanager
def single_thread() -> Iterator[None]:
    """Runs torch and BLAS on one thread each, as Optuna's GPSampler does: the matrices here are
    small, and the OpenMP and OpenBLAS thread pools otherwise fight over the cores (SciPy's
    L-BFGS-B slows down many times over; scipy/scipy#22438)."""
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(previous)


class ProposalEngine:
    """Fits the GP and proposes points, keeping the last fit to warm-start the next.

    Args:
        settings: Knobs of the numeric core.
    """

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self._state: Mapping[str, Any] | None = None
        self._target_only_state: Mapping[str, Any] | None = None
        # The number of target trials at the last guard check that kept the priors.
        self._kept_at: int | None = None
        # The target's best configuration that the last held-value restart started from.
        self._restarted_from: np.ndarray | None = None
        self._fits_since_restart = 0
        # Whether the target's results said the priors mislead at the last proposal: the next
        # fits then let the task correlations go negative (see ``settings.mislead_log_odds``).
        self._misled = False

    def fit(
        self,
        priors: Sequence[PriorRows],
        target_x: np.ndarray,
        target_y: np.ndarray,
        target_unfinished: UnfinishedRows | None = None,
    ) -> tuple[ICMGaussianProcess, TrainingData]:
        """Fits the ICM GP on priors (tasks ``0..P-1``) and the target (task ``P``).

        Args:
            priors: Encoded prior tasks.
            target_x: Completed target inputs ``(n, d)``.
            target_y: Their values ``(n,)``, lower is better.
            target_unfinished: The target's pruned trials, imputed by ``settings.pruned_trials``.
        """
        data = _training_data(priors, target_x, target_y, self.settings, target_unfinished)
        model, self._state = self._fit(data, self._state, len(target_y))
        return model, data

    def fit_target_only(
        self,
        target_x: np.ndarray,
        target_y: np.ndarray,
        target_unfinished: UnfinishedRows | None = None,
    ) -> tuple[ICMGaussianProcess, TrainingData]:
        """Fits a GP on the target's trials alone (a single task), warm-started separately.

        Args:
            target_x: Completed target inputs ``(n, d)``.
            target_y: Their values ``(n,)``, lower is better.
            target_unfinished: The target's pruned trials.
        """
        data = _training_data([], target_x, target_y, self.settings, target_unfinished)
        model, self._target_only_state = self._fit(data, self._target_only_state, len(target_y))
        return model, data

    def _fit(
        self, data: TrainingData, previous: Mapping[str, Any] | None, n_target: int
    ) -> tuple[ICMGaussianProcess, dict[str, Any]]:
        s = self.settings
        rank = min(s.rank, data.n_tasks)  # IndexKernel needs rank <= tasks (none before priors).
        options = s.model_options()
        if self._misled:
            options = replace(options, correlation_prior=False)
        state = compatible_state(
            previous, data.x.shape[1], data.n_tasks, rank, data.n_unknown, options
        )
        subset = _fit_subset(data, s.max_fit_points)
        # One target point says nothing about how the target relates to the priors (it is
        # standardized to 0), so the fit made on the priors alone is kept until a second one.
        max_iter = 0 if state is not None and n_target < 2 else 50 if state is not None else 200
        restarts = _held_value_restarts(data, state, rank, self._new_target_best(data))
        if self._misled and state is not None and data.n_tasks > 1:
            restarts.append(_with_target_correlations_negated(state))
        return fit_icm_gp(
            data,
            rank,
            state,
            subset,
            max_iter=max_iter,
            device=s.device,
            alternative_states=restarts,
            options=options,
        )

    def _new_target_best(self, data: TrainingData) -> np.ndarray | None:
        """The target's best configuration ``(d,)`` to restart the fit from, where it changed
        since the last restart or ``_HELD_RESTART_EVERY`` fits have passed since (None
        otherwise: the warm start keeps the mode the last restart chose)."""
        best = _target_best_x(data)
        if best is None or data.n_unknown == 0:
            return None
        last, self._fits_since_restart = self._restarted_from, self._fits_since_restart + 1
        same = last is not None and last.shape == best.shape and np.array_equal(last, best, True)
        if same and self._fits_since_restart < _HELD_RESTART_EVERY:
            return None
        self._restarted_from, self._fits_since_restart = best, 0
        return best

    def propose(
        self,
        space: SearchSpace,
        priors: Sequence[PriorRows],
        target_x: np.ndarray,
        target_y: np.ndarray,
        pending_x: np.ndarray,
        unfinished_x: np.ndarray,
        rng: np.random.RandomState,
        n_ahead: int = 0,
        target_unfinished: UnfinishedRows | None = None,
    ) -> Proposal:
        """Chooses the next target point.

        Args:
            space: The target search space.
            priors: Encoded prior tasks, possibly empty.
            target_x: Completed target inputs ``(n, d)``.
            target_y: Their values ``(n,)``, lower is better.
            pending_x: Inputs of running target trials ``(p, d)``.
            unfinished_x: Inputs of pruned and failed target trials ``(u, d)``: never
                proposed again.
            rng: Random source.
            n_ahead: Take the ``n_ahead``-th best point: the number of concurrent trials that are
                being proposed right now but have not shared their point yet.
            target_unfinished: The target's pruned trials, observations by
                ``settings.pruned_trials``.
        """
        with single_thread():
            model, data = self.fit(priors, target_x, target_y, target_unfinished)
            misled = self._priors_mislead(ConditionalView(model, space), data)
            if misled != self._misled:  # Refit at once with the correlations' prior changed.
                self._misled = misled
                model, data = self.fit(priors, target_x, target_y, target_unfinished)
            correlations = model.task_correlations()
            similarity = {p.name: float(correlations[i]) for i, p in enumerate(priors)}
            held = held_values(model, priors)
            candidates = _prior_candidates(
                model, data, self._candidates_per_prior(len(priors)), space, rng
            )
            alone = self.target_only_if_better(
                priors, model, data, target_x, target_y, target_unfinished
            )
            if alone is not None:
                model, data = alone
            target = data.n_tasks - 1
            if len(pending_x):
                pending = torch.as_tensor(pending_x, device=self.settings.device)
                model = model.condition_on(pending, target)
            view = ConditionalView(model, space)
            x, acquisition, source = self._choose(
                space, view, data, priors, candidates, pending_x, unfinished_x, rng, n_ahead
            )
            source = ProposalSource.TARGET_MODEL if alone is not None else source
            proposal = self._describe(
                view, data, priors, target_y, similarity, x, acquisition, source
            )
            proposal.held_values = held
            proposal.n_imputed = n_imputed(data, data.n_tasks - 1)
            return proposal

    def target_only_if_better(
        self,
        priors: Sequence[PriorRows],
        model: ICMGaussianProcess,
        data: TrainingData,
        target_x: np.ndarray,
        target_y: np.ndarray,
        target_unfinished: UnfinishedRows | None = None,
    ) -> tuple[ICMGaussianProcess, TrainingData] | None:
        """A GP on the target alone, if it predicts the target's trials better than the ICM.

        Both are scored by the leave-one-out log density of the target's (equally transformed)
        values. This guards against negative transfer: when the priors mislead, the ICM
        predicts the target's own trials far worse than a GP on them alone (by more than
        ``_TARGET_ONLY_MARGIN`` nats per trial), and the model phase goes on without the
        priors. Before ``settings.guard_start`` target trials the comparison is too
        noisy and the ICM is kept. A decision to keep the ICM stands for
        ``settings.guard_interval`` target trials.
        """
        n_needed = max(self.settings.guard_start, self.settings.n_prior_design_trials)
        if not priors or len(target_y) < n_needed:
            return None
        if self._kept_at is not None and 0 <= len(target_y) - self._kept_at < (
            self.settings.guard_interval
        ):
            return None
        alone, alone_data = self.fit_target_only(target_x, target_y, target_unfinished)
        gain = alone.loo_log_likelihood(0) - model.loo_log_likelihood(data.n_tasks - 1)
        if gain > _TARGET_ONLY_MARGIN * len(target_y):
            self._kept_at = None
            return alone, alone_data
        self._kept_at = len(target_y)
        return None

    def _candidates_per_prior(self, n_priors: int) -> int:
        s = self.settings
        if s.n_candidates_per_prior is not None:
            return s.n_candidates_per_prior
        return max(1, math.ceil(s.n_prior_design_trials / max(n_priors, 1)))

    def _priors_mislead(self, model: ConditionalView, data: TrainingData) -> bool:
        """Whether the target's results say that no prior task ranks them better than chance,
        by more than ``settings.mislead_log_odds`` (see ``ranking_log_odds``)."""
        threshold = self.settings.mislead_log_odds
        target = data.n_tasks - 1
        measured = measured_rows(data, target)
        if threshold is None or target == 0 or measured.sum() < 2:
            return False
        points = model.model.inputs[: len(data.y)][measured]
        means = _prior_means(model, points, list(range(target)))
        return ranking_log_odds(means, data.y[measured]) < -threshold

    def _choose(
        self,
        space: SearchSpace,
        model: ConditionalView,
        data: TrainingData,
        priors: Sequence[PriorRows],
        candidates: np.ndarray,
        pending_x: np.ndarray,
        unfinished_x: np.ndarray,
        rng: np.random.RandomState,
        n_ahead: int,
    ) -> tuple[np.ndarray, float, ProposalSource]:
        s = self.settings
        target = data.n_tasks - 1
        measured = measured_rows(data, target)
        target_x, target_y = data.x[measured], data.y[measured]
        others = np.concatenate([pending_x, unfinished_x]).reshape(-1, space.dim)
        taken = canonical_rows(space, np.concatenate([target_x, others]))
        best = float(target_y.min()) if len(target_y) else 0.0
        # The design counts every trial it has tried, pruned and failed ones too.
        n_tried = len(target_x) + len(unfinished_x)
        acqf = LogExpectedImprovement(model, target, best)
        free = _untuned_columns(priors, space.dim)
        if len(free) and len(candidates):
            candidates = _complete_untuned(acqf, candidates, free, space, rng)
        candidates = candidates[rows_not_in(canonical_rows(space, candidates), taken)]
        # With fewer candidates than concurrent proposals, the whole space is searched instead.
        design = priors and n_tried < s.n_prior_design_trials and not self._misled
        if design and len(candidates) > n_ahead:
            if s.design_branches:
                tried = np.concatenate([target_x, others])
                candidates = _first_of_their_branches(space, candidates, data, model, tried)
            x, value = best_candidate(_portfolio(model, data, others), candidates, n_ahead)
            return x, value, ProposalSource.PRIOR_DESIGN
        best_target = canonical_rows(space, target_x[np.argsort(target_y)[:3]])
        starts = np.concatenate([candidates, best_target])
        # A configuration already evaluated or running is not proposed again (re-evaluating
        # the incumbent is where log EI can end up late in a run, and it teaches nothing).
        x, value = optimize_acquisition(
            acqf,
            space,
            starts,
            rng,
            n_sobol=s.n_sobol,
            n_local=s.n_local_search,
            n_ahead=n_ahead,
            exclude=taken,
            canonical=lambda rows: canonical_rows(space, rows),
        )
        return x, value, ProposalSource.MODEL

    def _describe(
        self,
        model: ConditionalView,
        data: TrainingData,
        priors: Sequence[PriorRows],
        target_y: np.ndarray,
        similarity: dict[str, float],
        x: np.ndarray,
        acquisition: float,
        source: ProposalSource,
    ) -> Proposal:
        target = data.n_tasks - 1
        with torch.no_grad():
            point = torch.as_tensor(x[None, :], device=self.settings.device)
            mean, variance = model.posterior(point, target)
        raw = (
            target_y if len(target_y) >= 2 else np.concatenate([p.y for p in priors] or [target_y])
        )
        measured = measured_rows(data, target)
        prior_rows = (data.task != target) & (data.noise == 0 if data.noise is not None else True)
        standardized = data.y[measured] if len(target_y) >= 2 else data.y[prior_rows]
        offset, scale = affine_back(standardized, raw)
        target_standardized = data.y[measured]
        # Before two target values the target's units are unknown: no prediction in them.
        known_units = len(target_y) >= 2
        return Proposal(
            x=x,
            mean=offset + scale * float(mean[0]) if known_units else math.nan,
            std=abs(scale) * math.sqrt(float(variance[0])) if known_units else math.nan,
            acquisition=acquisition,
            source=source,
            similarity=similarity,
            view=PosteriorView(
                model=model,
                target_index=target,
                best=float(target_standardized.min()) if len(target_standardized) else 0.0,
                offset=offset,
                scale=scale,
            ),
        )
