"""The numeric core for several outputs: one to four objectives and any constraints.

Each output (an objective or a constraint) has its own ICM GP over the target and the priors
that recorded it, fitted and warm-started by its own ``ProposalEngine``; the outputs are
modelled as independent, as in Optuna's GPSampler. Phases, by the number ``n`` of completed
target trials:

- prior design (``n < n_prior_design_trials`` and an objective has priors): the candidates
  are the priors' non-dominated configurations (feasible ones where the priors recorded the
  constraints), chosen one by one as a greedy portfolio: each adds the most hypervolume, in
  expectation over the prior tasks, to the configurations the target has tried.
- afterwards: log expected hypervolume improvement over the target's feasible Pareto front
  (log EI with one objective), plus the log probability of feasibility of each constraint.
  Until a feasible point is known, the log probability of feasibility alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import math

import numpy as np
import torch

from optuna_metabo._core.acquisition import ConstrainedAcquisition
from optuna_metabo._core.acquisition import LogExpectedHypervolumeImprovement
from optuna_metabo._core.acquisition import LogExpectedImprovement
from optuna_metabo._core.acquisition import LogProbabilityOfFeasibility
from optuna_metabo._core.acquisition import PosteriorModel
from optuna_metabo._core.model import TrainingData
from optuna_metabo._core.optimize import AcquisitionFunction
from optuna_metabo._core.optimize import optimize_acquisition
from optuna_metabo._core.optimize import rows_not_in
from optuna_metabo._core.output_transform import affine_back
from optuna_metabo._core.output_transform import IDENTITY
from optuna_metabo._core.pareto import hypervolume
from optuna_metabo._core.pareto import hypervolume_improvement
from optuna_metabo._core.pareto import nondominated_boxes
from optuna_metabo._core.pareto import nondominated_mask
from optuna_metabo._core.proposal import canonical_rows
from optuna_metabo._core.proposal import ConditionalView
from optuna_metabo._core.proposal import held_values
from optuna_metabo._core.proposal import measured_rows
from optuna_metabo._core.proposal import n_imputed
from optuna_metabo._core.proposal import Proposal
from optuna_metabo._core.proposal import ProposalEngine
from optuna_metabo._core.proposal import single_thread
from optuna_metabo._core.proposal import task_weights
from optuna_metabo._core.pruned import UnfinishedRows
from optuna_metabo._core.search_space import SearchSpace
from optuna_metabo._core.types import EngineSettings
from optuna_metabo._core.types import PriorRows
from optuna_metabo._core.types import ProposalSource


# With more than two objectives the number of boxes grows as (front size + 1) ** (k - 1): the
# front the hypervolume improvement is measured against keeps at most this many points, spread
# out (an approximation that keeps the cost per trial bounded).
_FRONT_CAP = {3: 24, 4: 10}
_REFERENCE_MARGIN = 0.1
_MIN_FEASIBILITY = 0.5
_GUARD_INTERVAL = 3
_N_BEST = 3  # Per objective and prior, among the design candidates besides the front.
# The Beta prior on (1 + rho) / 2 of the failure indicator's task correlations: a wall where
# runs fail (out of memory at large batches) is expected to be shared by related tasks.
_FAILURE_CORRELATION = (9.0, 1.0)


@dataclass
class OutputData:
    """One output of the target, with the priors that recorded it.

    Attributes:
        priors: The encoded prior tasks of this output, possibly none.
        y: The target's values at its completed trials ``(n,)``, lower is better (at most
            zero is feasible for a constraint); NaN where a trial did not record it.
        is_constraint: Whether the output is a constraint.
        unfinished: The target's pruned and failed trials, imputed as observations of this
            objective (see ``_core.pruned``).
        extra: Target rows beyond the completed trials, measured: inputs ``(e, d)`` and
            values ``(e,)`` (the failure indicator of the pruned and failed trials).
    """

    priors: Sequence[PriorRows]
    y: np.ndarray
    is_constraint: bool = False
    unfinished: UnfinishedRows | None = None
    extra: tuple[np.ndarray, np.ndarray] | None = None


class _Uninformed:
    """The posterior of an output with no data at all: the GP prior in standardized units."""

    def posterior(self, x: torch.Tensor, task_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(len(x)).to(x), torch.ones(len(x)).to(x)


@dataclass
class _Fitted:
    """A fitted output.

    Attributes:
        model: Its model seen through the search space's conditions.
        target: The target's task index in ``model``.
        data: The training data; None for an uninformed output.
        raw: The target's raw values it was fitted on ``(n_k,)``.
        rows: Which target trials recorded the output ``(n,)``.
        filled: The training inputs with absent entries filled ``(N, d)``.
        names: The prior tasks' names in task order (empty if the priors were set aside).
        replaced: A GP on the target alone replaced the ICM (negative-transfer guard).
        similarity: Correlation of each prior task with the target, by name.
        held: Learned held values of the priors (see ``Proposal.held_values``).
    """

    model: PosteriorModel
    target: int
    data: TrainingData | None
    raw: np.ndarray
    rows: np.ndarray
    filled: np.ndarray
    names: list[str] = field(default_factory=list)
    replaced: bool = False
    similarity: dict[str, float] = field(default_factory=dict)
    held: dict[str, dict[int, float]] = field(default_factory=dict)

    def task_of(self, name: str) -> int:
        """The task index of prior ``name``, or the target's where the output lacks it."""
        return self.names.index(name) if name in self.names else self.target

    def standardized(self) -> np.ndarray:
        """The target's measured values in the model's units ``(n_k,)``."""
        if self.data is None:
            return np.zeros(0)
        return self.data.y[measured_rows(self.data, self.target)]


def _zero_preserving_scale(
    priors: Sequence[PriorRows], y: np.ndarray
) -> tuple[Sequence[PriorRows], np.ndarray]:
    """Divides each task's constraint values by their root mean square.

    Zero, the feasibility bound, stays zero in every task, while tasks whose values differ in
    magnitude (a time limit on a fast and a slow task) come to one scale. Per-task
    standardization would instead move the bound with each task's mean and spread, which a
    few target values (often all infeasible, or all feasible) pin down badly.
    """

    def scaled(values: np.ndarray) -> np.ndarray:
        rms = float(np.sqrt(np.mean(values**2))) if len(values) else 1.0
        return values / (rms if rms > 1e-12 else 1.0)

    return [replace(p, y=scaled(p.y)) for p in priors], scaled(y)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _moments(fitted: _Fitted, x: np.ndarray, task: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation of one task at rows ``x`` ``(r, d)``."""
    if len(x) == 0:
        return np.zeros(0), np.zeros(0)
    with torch.no_grad():
        mean, variance = fitted.model.posterior(_tensor(x), task)
    return mean.cpu().numpy(), np.sqrt(variance.cpu().numpy())


def _feasibility(constraints: list[_Fitted], x: np.ndarray, name: str | None) -> np.ndarray:
    """Probability that rows ``x`` are feasible on prior ``name`` (the target for None)."""
    from scipy.special import ndtr

    probability = np.ones(len(x))
    for fitted in constraints:
        if name is not None and name not in fitted.names:
            continue  # This prior did not record the constraint: it says nothing about it.
        task = fitted.target if name is None else fitted.task_of(name)
        mean, std = _moments(fitted, x, task)
        probability *= ndtr(-mean / std)
    return probability


def _spread_subset(front: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` rows of ``front`` ``(n, m)``, chosen far apart (farthest-point order,
    starting from the row with the lowest sum)."""
    if len(front) <= k:
        return front
    chosen = [int(np.argmin(front.sum(axis=1)))]
    distance = np.linalg.norm(front - front[chosen[0]], axis=1)
    while len(chosen) < k:
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(front - front[chosen[-1]], axis=1))
    return front[chosen]


def _reference(values: np.ndarray) -> np.ndarray:
    """A reference point just beyond the worst of ``values`` ``(n, m)`` in each objective."""
    spread = np.maximum(np.ptp(values, axis=0), 1e-6)
    return values.max(axis=0) + _REFERENCE_MARGIN * spread


def _front_volume(values: np.ndarray, reference: np.ndarray) -> float:
    """The hypervolume of the front of ``values`` ``(r, m)`` (its spread subset for more than
    two objectives, as in the acquisition), at least a tiny positive number."""
    front = values[nondominated_mask(values)]
    front = _spread_subset(front, _FRONT_CAP.get(values.shape[1], len(front)))
    return max(hypervolume(front, reference), 1e-12)


class _PriorPortfolio:
    """The priors' non-dominated configurations and how much each adds to a portfolio.

    A configuration's value on prior task ``p`` is the hypervolume it adds to the points tried
    on the target, both placed at ``p``'s posterior means and scaled by the hypervolume of
    ``p``'s own front, times its probability of feasibility on ``p``; the
    criterion sums over the prior tasks, weighted (see ``weights``). With nothing tried it
    prefers a configuration good on every objective across tasks; later ones fill the parts of
    the fronts the portfolio lacks.

    Args:
        objectives: The fitted objectives.
        constraints: The fitted constraints (the failure indicator among them).
        space: The search space, to snap candidates onto it.
        failure: The fitted failure indicator: each candidate is also weighted by its
            probability of running through on the target.
    """

    def __init__(
        self,
        objectives: list[_Fitted],
        constraints: list[_Fitted],
        space: SearchSpace,
        failure: _Fitted | None = None,
    ) -> None:
        self.objectives, self.constraints, self.failure = objectives, constraints, failure
        self.names = list(dict.fromkeys(n for f in objectives for n in f.names))
        # Each prior's configurations (snapped) and their posterior means ``(r, m)``.
        self._configs = {n: space.snap(np.clip(self._rows(n), 0.0, 1.0)) for n in self.names}
        self._own = {n: self._means(n, self._configs[n]) for n in self.names}
        self._reference = {n: _reference(own) for n, own in self._own.items()}
        self._scale = {n: _front_volume(own, self._reference[n]) for n, own in self._own.items()}
        fronts = [self._front(name, space) for name in self.names]
        self.candidates = (
            np.unique(np.concatenate(fronts), axis=0) if fronts else np.zeros((0, space.dim))
        )

    def _means(self, name: str, x: np.ndarray) -> np.ndarray:
        """Posterior means ``(r, m)`` of prior ``name`` at ``x``; the target's where it lacks
        an objective."""
        return np.stack([_moments(f, x, f.task_of(name))[0] for f in self.objectives], axis=1)

    def _rows(self, name: str) -> np.ndarray:
        """Prior ``name``'s configurations (held values filled in) ``(r, d)``."""
        for fitted in self.objectives:
            if name in fitted.names and fitted.data is not None:
                return fitted.filled[measured_rows(fitted.data, fitted.task_of(name))]
        return np.zeros((0, 0))

    def _front(self, name: str, space: SearchSpace) -> np.ndarray:
        """Prior ``name``'s likely feasible configurations that are non-dominated or among
        the ``_N_BEST`` best in some objective, under its posterior means."""
        rows, means = self._configs[name], self._own[name]  # (r, d), (r, m)
        if len(rows) == 0:
            return np.zeros((0, space.dim))
        feasible = _feasibility(self.constraints, rows, name) >= _MIN_FEASIBILITY
        if feasible.any():
            rows, means = rows[feasible], means[feasible]
        best = np.argsort(means, axis=0, kind="stable")[:_N_BEST].reshape(-1)
        return np.unique(np.concatenate([rows[nondominated_mask(means)], rows[best]]), axis=0)

    def weights(self, target_x: np.ndarray) -> np.ndarray:
        """How likely each prior task is to rank the target's results as the target did, on
        every objective at once (the product of ``task_weights`` over objectives): ``(P,)``."""
        log_weight = np.zeros(len(self.names))
        for k, fitted in enumerate(self.objectives):
            if len(fitted.standardized()) != len(target_x) or not len(target_x):
                continue
            means = np.stack([self._means(n, target_x)[:, k] for n in self.names], axis=1)
            log_weight += np.log(task_weights(means, fitted.standardized()))
        weight = np.exp(log_weight - log_weight.max())
        return weight / weight.sum()

    def scores(self, x: np.ndarray, tried: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The criterion at candidate rows ``x`` ``(c, d)``.

        Args:
            x: Candidate rows.
            tried: The target's completed and running rows ``(s, d)``.
            weights: Weight of each prior task ``(P,)`` (see ``weights``).
        """
        total = np.zeros(len(x))
        for name, weight in zip(self.names, weights):
            reference, scale = self._reference[name], self._scale[name]
            gains = hypervolume_improvement(
                self._means(name, x), self._means(name, tried), reference
            )
            total += weight * _feasibility(self.constraints, x, name) * gains / scale
        if self.failure is not None:
            total *= _feasibility([self.failure], x, None)
        return total


class MultiOutputEngine:
    """Fits one GP per output and proposes points; each output's fit warm-starts the next.

    Args:
        settings: Knobs of the numeric core (constraints are scaled so that zero stays the
            feasibility bound, see ``_zero_preserving_scale``).
        n_objectives: Number of objectives.
        n_constraints: Number of constraints, the failure indicator included.
        failure: Whether the last constraint is the failure indicator.
    """

    def __init__(
        self,
        settings: EngineSettings,
        n_objectives: int,
        n_constraints: int,
        failure: bool = False,
    ) -> None:
        # With one GP per output, the guard's extra fits multiply: each output re-checks it
        # every few trials instead of every trial.
        settings = replace(settings, guard_interval=_GUARD_INTERVAL)
        self.settings = settings
        constraint_settings = replace(settings, output_transform=IDENTITY)
        failure_settings = replace(constraint_settings, correlation_beta=_FAILURE_CORRELATION)
        self._engines = [ProposalEngine(settings) for _ in range(n_objectives)] + [
            ProposalEngine(
                failure_settings if failure and i == n_constraints - 1 else constraint_settings
            )
            for i in range(n_constraints)
        ]
        self.n_objectives = n_objectives
        self.failure = failure

    def propose(
        self,
        space: SearchSpace,
        outputs: list[OutputData],
        target_x: np.ndarray,
        pending_x: np.ndarray,
        unfinished_x: np.ndarray,
        rng: np.random.RandomState,
        n_ahead: int = 0,
    ) -> Proposal:
        """Chooses the next target point.

        Args:
            space: The target search space.
            outputs: The objectives, then the constraints.
            target_x: Completed target inputs ``(n, d)``.
            pending_x: Inputs of running target trials ``(p, d)``.
            unfinished_x: Inputs of pruned and failed target trials ``(u, d)``: never
                proposed again.
            rng: Random source.
            n_ahead: Take the ``n_ahead``-th best point (see ``ProposalEngine.propose``).
        """
        with single_thread():
            fitted = [
                self._fit(engine, output, target_x, pending_x, space)
                for engine, output in zip(self._engines, outputs)
            ]
            objectives, constraints = fitted[: self.n_objectives], fitted[self.n_objectives :]
            failure = constraints[-1] if self.failure else None
            portfolio = _PriorPortfolio(objectives, constraints, space, failure)
            others = np.concatenate([pending_x, unfinished_x]).reshape(-1, space.dim)
            taken = canonical_rows(space, np.concatenate([target_x, others]))
            fresh = portfolio.candidates[
                rows_not_in(canonical_rows(space, portfolio.candidates), taken)
            ]
            # The design counts every trial it has tried, pruned and failed ones too.
            design = len(target_x) + len(unfinished_x) < self.settings.n_prior_design_trials
            if portfolio.names and design and len(fresh) > n_ahead:
                tried = np.concatenate([target_x, others])
                scores = portfolio.scores(fresh, tried, portfolio.weights(target_x))
                index = int(np.argsort(-scores, kind="stable")[n_ahead])
                x, value, source = fresh[index], float(scores[index]), ProposalSource.PRIOR_DESIGN
            else:
                x, value = self._optimize(
                    space, objectives, constraints, fresh, taken, rng, n_ahead
                )
                replaced = [f.replaced for f in fitted if f.names or f.replaced]
                alone = replaced and all(replaced)
                source = ProposalSource.TARGET_MODEL if alone else ProposalSource.MODEL
            return self._describe(objectives, constraints, failure, x, value, source)

    def _fit(
        self,
        engine: ProposalEngine,
        output: OutputData,
        target_x: np.ndarray,
        pending_x: np.ndarray,
        space: SearchSpace,
    ) -> _Fitted:
        rows = np.isfinite(output.y)
        x, raw = target_x[rows], output.y[rows]
        if output.extra is not None:
            x, raw_all = (
                np.concatenate([x, output.extra[0]]),
                np.concatenate([raw, output.extra[1]]),
            )
        else:
            raw_all = raw
        if not output.priors and len(raw_all) == 0:
            return _Fitted(_Uninformed(), 0, None, raw, rows, np.zeros((0, space.dim)))
        priors, y = output.priors, raw_all
        if output.is_constraint:
            priors, y = _zero_preserving_scale(priors, raw_all)
        model, data = engine.fit(priors, x, y, output.unfinished)
        correlations = model.task_correlations()
        fitted = _Fitted(
            model,
            data.n_tasks - 1,
            data,
            raw,
            rows,
            model.inputs,
            [p.name for p in priors],
            similarity={p.name: float(correlations[i]) for i, p in enumerate(priors)},
            held=held_values(model, priors),
        )
        alone = engine.target_only_if_better(priors, model, data, x, y, output.unfinished)
        if alone is not None:
            model, data = alone
            fitted = replace(fitted, target=0, data=data, names=[], replaced=True)
        if len(pending_x):
            model = model.condition_on(torch.as_tensor(pending_x), fitted.target)
        fitted.model = ConditionalView(model, space)
        return fitted

    def _acquisition(
        self, objectives: list[_Fitted], constraints: list[_Fitted]
    ) -> tuple[AcquisitionFunction, np.ndarray]:
        """The acquisition function, and the target rows on its feasible front (for starts)."""
        values = np.stack([f.standardized() for f in objectives], axis=1)  # (n, m)
        feasible = np.ones(len(values), dtype=bool)
        for fitted in constraints:
            feasible &= _target_column(fitted) <= 0.0
        objective: AcquisitionFunction | None = None
        front_rows = np.zeros(0, dtype=np.int64)
        if feasible.any() and len(values):
            front_rows = np.flatnonzero(feasible)[nondominated_mask(values[feasible])]
            objective = self._objective_acquisition(objectives, values, values[front_rows])
        pofs = [LogProbabilityOfFeasibility(f.model, f.target, 0.0) for f in constraints]
        if not constraints:
            assert objective is not None
            return objective, front_rows
        return ConstrainedAcquisition(objective, pofs), front_rows

    def _objective_acquisition(
        self, objectives: list[_Fitted], values: np.ndarray, front: np.ndarray
    ) -> AcquisitionFunction:
        if len(objectives) == 1:
            return LogExpectedImprovement(objectives[0].model, objectives[0].target, front.min())
        front = _spread_subset(front, _FRONT_CAP.get(len(objectives), len(front)))
        lower, upper = nondominated_boxes(front, _reference(values))
        return LogExpectedHypervolumeImprovement(
            [f.model for f in objectives],
            [f.target for f in objectives],
            _tensor(lower),
            _tensor(upper),
        )

    def _optimize(
        self,
        space: SearchSpace,
        objectives: list[_Fitted],
        constraints: list[_Fitted],
        prior_starts: np.ndarray,
        taken: np.ndarray,
        rng: np.random.RandomState,
        n_ahead: int,
    ) -> tuple[np.ndarray, float]:
        acqf, front_rows = self._acquisition(objectives, constraints)
        target_rows = taken[: len(objectives[0].standardized())]
        starts = np.concatenate([prior_starts, target_rows[front_rows]])
        return optimize_acquisition(
            acqf,
            space,
            starts,
            rng,
            n_sobol=self.settings.n_sobol,
            n_local=self.settings.n_local_search,
            n_ahead=n_ahead,
            exclude=taken,
            canonical=lambda rows: canonical_rows(space, rows),
        )

    def _describe(
        self,
        objectives: list[_Fitted],
        constraints: list[_Fitted],
        failure: _Fitted | None,
        x: np.ndarray,
        value: float,
        source: ProposalSource,
    ) -> Proposal:
        means, stds = [], []
        for fitted in objectives:
            mean, std = _moments(fitted, x[None, :], fitted.target)
            offset, scale = affine_back(fitted.standardized(), fitted.raw)
            known = len(fitted.raw) >= 2
            means.append(offset + scale * float(mean[0]) if known else math.nan)
            stds.append(abs(scale) * float(std[0]) if known else math.nan)
        similarity: dict[str, float] = {}
        held: dict[str, dict[int, float]] = {}
        for fitted in objectives + constraints:
            similarity = {**fitted.similarity, **similarity}
            held = {**fitted.held, **held}
        user_constraints = [f for f in constraints if f is not failure]
        feasibility = (
            float(_feasibility(user_constraints, x[None, :], None)[0])
            if user_constraints
            else math.nan
        )
        failure_probability = (
            1.0 - float(_feasibility([failure], x[None, :], None)[0])
            if failure is not None
            else math.nan
        )
        first = objectives[0]
        return Proposal(
            x=x,
            n_imputed=n_imputed(first.data, first.target) if first.data is not None else 0,
            mean=means[0],
            std=stds[0],
            acquisition=value,
            source=source,
            similarity=similarity,
            held_values=held,
            objective_means=np.array(means),
            objective_stds=np.array(stds),
            feasibility=feasibility,
            failure_probability=failure_probability,
        )


def _target_column(fitted: _Fitted) -> np.ndarray:
    """The target's raw values of a constraint for every target trial ``(n,)``; NaN (taken as
    infeasible) where a trial did not record it."""
    column = np.full(len(fitted.rows), np.nan)
    column[fitted.rows] = fitted.raw
    return column
