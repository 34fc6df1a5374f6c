"""The target's outputs (objectives and constraints) and how prior studies' metrics match them.

A target study has one to four objectives and any number of constraints. Each output is
modelled by its own multi-task GP over the prior studies that recorded a matching metric:

- objectives match by metric name (``study.set_metric_names``) where both studies name their
  metrics, else by position where both have the same number of objectives (a single-objective
  prior always matches a single-objective target). Each study's values are turned into
  "lower is better" by its own direction, so directions are aligned per objective;
- constraints match by key: ``constraints_func`` values are keys ``"0"``, ``"1"``, ... and
  ``trial.set_constraint(key, value)`` values their own keys, as ``FrozenTrial.constraints``
  reads them. Lower is feasible (at most zero), in every study.

Nothing here reads a storage or touches a study (see ``_history.prior_studies`` and ``_sampler``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution

from optuna_metabo._core.pruned import Curve
from optuna_metabo._history.priors import PriorTask
from optuna_metabo._history.priors import SkippedPrior


MAX_OBJECTIVES = 4


@dataclass
class PriorStudy:
    """The completed trials of one prior study, with all its recorded metrics.

    Attributes:
        name: The study name.
        params: One parameter dictionary per usable trial.
        values: Objective values ``(n, k)``, sign-flipped per objective so lower is better.
        signs: The flip of each objective ``(k,)``: ``+1`` minimized, ``-1`` maximized.
        metric_names: The study's metric names, or None where it set none.
        constraints: Constraint values ``(n,)`` by key (at most zero is feasible); NaN for a
            trial that did not record that constraint.
        n_total: Number of trials in the study, of any state.
        distributions: Union of the distributions its trials used, by parameter name.
        curves: The intermediate values of each completed trial (a single-objective study).
        pruned_params: The parameters of each pruned trial.
        pruned_curves: Their intermediate values.
        failed_params: The parameters of each failed trial (a FAIL, or a NaN or infinite
            value: a diverged run).
    """

    name: str
    params: list[dict[str, Any]]
    values: np.ndarray
    signs: np.ndarray
    metric_names: tuple[str, ...] | None
    constraints: dict[str, np.ndarray]
    n_total: int
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    curves: list[Curve] = field(default_factory=list)
    pruned_params: list[dict[str, Any]] = field(default_factory=list)
    pruned_curves: list[Curve] = field(default_factory=list)
    failed_params: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TargetOutputs:
    """What the target study optimizes and must satisfy.

    Attributes:
        metric_names: Its metric names, or None where it set none (one entry per objective
            otherwise).
        n_objectives: Number of objectives.
        constraint_keys: The keys of its constraints, in a stable order.
        failure: Whether its failures are modelled (a target or prior trial failed): an
            output after the constraints, the failure indicator (``+1`` failed, ``-1`` not),
            which counts as a constraint.
    """

    metric_names: tuple[str, ...] | None
    n_objectives: int
    constraint_keys: tuple[str, ...] = ()
    failure: bool = False

    @property
    def n_outputs(self) -> int:
        """Objectives, constraints and the failure indicator."""
        return self.n_objectives + len(self.constraint_keys) + int(self.failure)

    def objective_label(self, index: int) -> str:
        """The objective's metric name, else its position as text."""
        return self.metric_names[index] if self.metric_names else str(index)


@dataclass(frozen=True)
class OutputMatch:
    """How one prior study's metrics line up with the target's outputs.

    Attributes:
        columns: For each target objective, the prior's objective column, or None.
        constraints: The target constraint keys the prior recorded.
        by: ``"name"`` or ``"position"``.
    """

    columns: tuple[int | None, ...]
    constraints: tuple[str, ...]
    by: str

    def describe(self, target: TargetOutputs, prior: PriorStudy) -> str:
        """A short text such as ``"val_accuracy <- val_accuracy (by name)"``."""
        parts = []
        for index, column in enumerate(self.columns):
            if column is not None:
                source = prior.metric_names[column] if prior.metric_names else str(column)
                parts.append(f"{target.objective_label(index)} <- {source}")
        parts += [f"constraint {key}" for key in self.constraints]
        return f"{', '.join(parts)} (by {self.by})"


def match_outputs(prior: PriorStudy, target: TargetOutputs) -> OutputMatch | SkippedPrior:
    """Lines a prior study's objectives and constraints up with the target's, or says why not.

    Args:
        prior: The prior study.
        target: The target's outputs.
    """
    n_prior = prior.values.shape[1]
    constraints = tuple(k for k in target.constraint_keys if k in prior.constraints)
    if target.metric_names is not None and prior.metric_names is not None:
        positions = {name: i for i, name in enumerate(prior.metric_names)}
        columns = tuple(positions.get(name) for name in target.metric_names)
        if all(c is None for c in columns):
            return SkippedPrior(
                prior.name,
                f"none of its metrics ({', '.join(prior.metric_names)}) matches the target's "
                f"({', '.join(target.metric_names)})",
            )
        return OutputMatch(columns, constraints, "name")
    if n_prior != target.n_objectives:
        return SkippedPrior(
            prior.name,
            f"it has {n_prior} objective(s) and the target {target.n_objectives}, and the "
            "metrics are not named in both studies; name them with study.set_metric_names to "
            "match them",
        )
    return OutputMatch(tuple(range(n_prior)), constraints, "position")


def output_tasks(
    prior: PriorStudy, match: OutputMatch, target: TargetOutputs
) -> list[PriorTask | None]:
    """One single-output prior task per target output (objectives, constraints, then the
    failure indicator), or None where the prior has no matching metric or no finite value of
    it. A single-objective prior's task of a single-objective target carries its curves and
    its pruned and failed trials.

    Args:
        prior: The prior study.
        match: How it lines up with the target.
        target: The target's outputs.
    """
    columns: list[np.ndarray | None] = [
        None if c is None else prior.values[:, c] for c in match.columns
    ]
    columns += [prior.constraints.get(key) for key in target.constraint_keys]
    tasks: list[PriorTask | None] = []
    for values in columns:
        finite = np.isfinite(values) if values is not None else np.zeros(0, dtype=bool)
        if values is None or not finite.any():
            tasks.append(None)
            continue
        params = [p for p, keep in zip(prior.params, finite) if keep]
        tasks.append(
            PriorTask(prior.name, params, values[finite], prior.n_total, prior.distributions)
        )
    if target.n_objectives == 1 and prior.values.shape[1] == 1 and tasks[0] is not None:
        tasks[0] = replace(
            tasks[0],
            curves=prior.curves,
            pruned_params=prior.pruned_params,
            pruned_curves=prior.pruned_curves,
            failed_params=prior.failed_params,
        )
    if target.failure:  # A prior that never failed says nothing about where runs fail.
        tasks.append(failure_task(prior) if prior.failed_params else None)
    return tasks


def failure_task(prior: PriorStudy) -> PriorTask:
    """The prior's failure indicator: ``+1`` at each failed trial, ``-1`` at the others.

    Args:
        prior: The prior study.
    """
    ran = prior.params + prior.pruned_params
    params = ran + prior.failed_params
    values = np.concatenate([-np.ones(len(ran)), np.ones(len(prior.failed_params))])
    return PriorTask(prior.name, params, values, prior.n_total, prior.distributions)


def prior_output_tasks(
    studies: Sequence[PriorStudy], target: TargetOutputs
) -> tuple[list[list[PriorTask]], list[SkippedPrior], dict[str, str]]:
    """The prior tasks of each target output (objectives, then constraints).

    Args:
        studies: The usable prior studies.
        target: The target's outputs.

    Returns:
        The tasks per output, the studies skipped with their reasons, and how each used
        study's metrics were matched (see ``OutputMatch.describe``).
    """
    per_output: list[list[PriorTask]] = [[] for _ in range(target.n_outputs)]
    skipped: list[SkippedPrior] = []
    matched: dict[str, str] = {}
    for study in studies:
        match = match_outputs(study, target)
        if isinstance(match, SkippedPrior):
            skipped.append(match)
            continue
        tasks = output_tasks(study, match, target)
        if all(t is None for t in tasks[: target.n_objectives]):
            skipped.append(SkippedPrior(study.name, "it has no finite value of a matching metric"))
            continue
        for index, task in enumerate(tasks):
            if task is not None:
                per_output[index].append(task)
        matched[study.name] = match.describe(target, study)
    return per_output, skipped, matched


def constraint_key_order(keys: Sequence[str]) -> tuple[str, ...]:
    """Keys in a stable order: positional ones (``"0"``, ``"1"``, ...) by number, then names."""
    return tuple(
        sorted(set(keys), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    )


def check_constraint_values(
    values: Any, trial_number: int, expected: int | None
) -> tuple[float, ...]:
    """Validates what a ``constraints_func`` returned, as Optuna's samplers do.

    Args:
        values: The returned value.
        trial_number: The trial, for messages.
        expected: How many values earlier trials' constraints had, if any.

    Raises:
        ValueError: A NaN, a non-number, or another count than earlier trials.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise ValueError(
            f"constraints_func must return a sequence of floats; for trial {trial_number} it "
            f"returned {values!r}."
        )
    try:
        floats = tuple(float(v) for v in values)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"constraints_func returned a non-number for trial {trial_number}: {values!r}."
        ) from error
    if any(math.isnan(v) for v in floats):
        raise ValueError(f"Constraint values cannot be NaN (trial {trial_number}: {floats}).")
    if expected is not None and len(floats) != expected:
        raise ValueError(
            f"constraints_func returned {len(floats)} values for trial {trial_number} but "
            f"{expected} for earlier trials; it must return the same number for every trial."
        )
    return floats
