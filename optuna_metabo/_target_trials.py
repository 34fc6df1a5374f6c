"""Reading the target study: its trials, outputs and pending points, as arrays.

Like ``_sampler``, this glue touches ``Study`` and ``FrozenTrial``; the numeric core below it
sees only the arrays made here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import datetime
import json
import math
from typing import Any
from typing import TYPE_CHECKING

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_metabo._core.pruned import curve_of
from optuna_metabo._core.pruned import EMPTY_CURVE
from optuna_metabo._core.pruned import UnfinishedRows
from optuna_metabo._core.search_space import SearchSpace
from optuna_metabo._history.outputs import constraint_key_order
from optuna_metabo._history.outputs import TargetOutputs
from optuna_metabo._history.prior_studies import study_metric_names
from optuna_metabo._vocabulary import CONSTRAINTS_KEY
from optuna_metabo._vocabulary import SYSTEM_ATTR_SHARED_PARAMS
from optuna_metabo._vocabulary import trial_constraints


if TYPE_CHECKING:
    from optuna.study import Study


# A running trial without a shared point that started this recently is still being proposed.
SHARE_WINDOW_SECONDS = 300.0


def n_constraints_before(study: Study) -> int | None:
    """How many values ``constraints_func`` returned for the latest trial that stored them."""
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    for trial in reversed(study._get_trials(deepcopy=False, states=states, use_cache=True)):
        stored = trial.system_attrs.get(CONSTRAINTS_KEY)
        if isinstance(stored, (list, tuple)):
            return len(stored)
    return None


def objective_signs(study: Study) -> np.ndarray:
    """``+1`` for each minimized objective, ``-1`` for each maximized one: ``(k,)``."""
    return np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions])


def metric_names(study: Study) -> list[str] | None:
    """The study's metric names, read from its storage: under ``HyperbandPruner`` the sampler
    is handed a bracket view of the study, which forbids ``Study.metric_names``."""
    return study_metric_names(study._storage, study._study_id)


def target_outputs(study: Study, completed: list[FrozenTrial]) -> TargetOutputs:
    """The target's objectives (with their names) and the constraints its trials recorded."""
    keys = constraint_key_order([k for t in completed for k in trial_constraints(t.system_attrs)])
    names = metric_names(study)
    return TargetOutputs(tuple(names) if names else None, len(study.directions), keys)


def n_space_defining(study: Study) -> int:
    """The trials that define the relative search space: complete and pruned ones (a trial
    that failed may not have suggested every parameter)."""
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    return len(study._get_trials(deepcopy=False, states=states, use_cache=True))


@dataclass
class TargetTrials:
    """The target study's trials, grouped by what the sampler does with them.

    Attributes:
        completed: COMPLETE trials with a finite value of every objective: the model's data.
        running: Pending points: RUNNING trials, and WAITING ones that hold parameters (a
            failed trial that ``RetryFailedTrialCallback`` re-queued), which another worker
            will pop any moment. The trial being sampled is not among them.
        pruned: PRUNED trials.
        failed: FAIL trials that hold parameters, and COMPLETE ones with a NaN or infinite
            value (a diverged run).
    """

    completed: list[FrozenTrial]
    running: list[FrozenTrial]
    pruned: list[FrozenTrial]
    failed: list[FrozenTrial]

    @property
    def unfinished(self) -> list[FrozenTrial]:
        """The pruned and failed trials: never proposed again."""
        return self.pruned + self.failed


def target_trials(study: Study, trial: FrozenTrial | None) -> TargetTrials:
    """The target's trials by group; ``trial`` (the one being sampled) is left out.

    Args:
        study: The target study, or the bracket view ``HyperbandPruner`` hands the sampler;
            either way every trial of the study is read, not only the bracket's.
        trial: The trial being sampled, if any.
    """
    trials = study._get_trials(deepcopy=False, use_cache=False)
    n_objectives = len(study.directions)
    groups = TargetTrials([], [], [], [])
    for t in trials:
        if trial is not None and t.number == trial.number:
            continue
        if t.state == TrialState.COMPLETE:
            finite = t.values is not None and len(t.values) == n_objectives
            finite = finite and all(math.isfinite(v) for v in t.values)
            (groups.completed if finite else groups.failed).append(t)
        elif t.state == TrialState.RUNNING or t.state == TrialState.WAITING and t.params:
            groups.running.append(t)
        elif t.state == TrialState.PRUNED:
            groups.pruned.append(t)
        elif t.state == TrialState.FAIL and t.params:
            groups.failed.append(t)
    return groups


def n_unshared_before(running: list[FrozenTrial], trial: FrozenTrial) -> int:
    """Running trials that started before ``trial`` (within the last few minutes) and whose
    sampler has not shared a point yet: they are being proposed right now, by the same
    deterministic procedure, so ``trial`` takes the next-best point instead of the same one."""
    now = datetime.datetime.now()
    return sum(
        1
        for t in running
        if t.number < trial.number
        and not params_of(t)
        and t.datetime_start is not None
        and (now - t.datetime_start).total_seconds() < SHARE_WINDOW_SECONDS
    )


def params_of(trial: FrozenTrial) -> dict[str, Any]:
    """Parameters of a trial, including those a sampler chose but the objective has not yet
    suggested (stored as a system attribute so other workers see pending points)."""
    params = dict(trial.params)
    stored = trial.system_attrs.get(SYSTEM_ATTR_SHARED_PARAMS)
    if isinstance(stored, str) and not trial.state.is_finished():
        params = {**json.loads(stored), **params}
    return params


def encode_trials(
    space: SearchSpace,
    trials: list[FrozenTrial],
    signs: np.ndarray | None = None,
    constraint_keys: Sequence[str] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Normalized inputs ``(n, d)`` and outputs ``(n, k + c)`` of the trials inside ``space``:
    objective values times ``signs`` (lower is better), then constraint values (NaN where a
    trial did not record one). Without ``signs``, no outputs (pending trials)."""
    x, inside = _encode_inside(space, trials)
    n_outputs = 0 if signs is None else len(signs) + len(constraint_keys)
    outputs = []
    for trial in inside if signs is not None else []:
        constraints = trial_constraints(trial.system_attrs)
        recorded = [constraints.get(k, math.nan) for k in constraint_keys]
        outputs.append(np.concatenate([signs * np.asarray(trial.values), recorded]))
    return x, np.array(outputs).reshape(len(inside), n_outputs)


def _encode_inside(
    space: SearchSpace, trials: list[FrozenTrial]
) -> tuple[np.ndarray, list[FrozenTrial]]:
    """Normalized inputs ``(n, d)`` of the trials inside ``space``, and those trials."""
    rows, inside = [], []
    for trial in trials:
        row = space.encode({**space.fixed_values, **params_of(trial)})
        if row is not None:
            rows.append(np.clip(row, 0.0, 1.0))
            inside.append(trial)
    x = np.array(rows).reshape(len(rows), space.dim)
    # A shared branch value that the trial's parent choice switches off is not used.
    x[space.inactive_mask(np.nan_to_num(x, nan=0.5))] = np.nan
    return x, inside


def unfinished_rows(space: SearchSpace, history: TargetTrials) -> UnfinishedRows | None:
    """The target's pruned trials with their curves, then its failed ones with none, and the
    completed trials' curves (in the order of ``encode_trials``'s rows); None if there are no
    pruned or failed trials.

    Args:
        space: The target space.
        history: The target's trials.
    """
    x, inside = _encode_inside(space, history.pruned + history.failed)
    if not inside:
        return None
    _, measured = _encode_inside(space, history.completed)
    failed = np.array([t.state != TrialState.PRUNED for t in inside])
    return UnfinishedRows(
        x,
        [EMPTY_CURVE if f else curve_of(t.intermediate_values) for t, f in zip(inside, failed)],
        [curve_of(t.intermediate_values) for t in measured],
        failed,
    )


def failure_rows(
    space: SearchSpace, pruned: list[FrozenTrial], failed: list[FrozenTrial]
) -> tuple[np.ndarray, np.ndarray]:
    """The failure indicator beyond the completed trials: inputs ``(e, d)`` of the pruned and
    failed trials, and ``-1`` for each pruned one, ``+1`` for each failed one ``(e,)``."""
    x_pruned, _ = _encode_inside(space, pruned)
    x_failed, _ = _encode_inside(space, failed)
    y = np.concatenate([-np.ones(len(x_pruned)), np.ones(len(x_failed))])
    return np.concatenate([x_pruned, x_failed]), y
