"""Reading prior studies: which ones, when to read them again, and which trials are usable.

Prior studies are only ever read: nothing here calls a storage method that writes (see
``_history.storages`` for how storages are opened).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import logging
import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_metabo._core.pruned import Curve
from optuna_metabo._core.pruned import curve_of
from optuna_metabo._core.pruned import n_skipped
from optuna_metabo._history.outputs import constraint_key_order
from optuna_metabo._history.outputs import PriorStudy
from optuna_metabo._history.priors import SkippedPrior
from optuna_metabo._history.storages import open_storage
from optuna_metabo._history.storages import PriorStudyError
from optuna_metabo._history.storages import resolve_study_names
from optuna_metabo._history.storages import storage_identity
from optuna_metabo._vocabulary import trial_constraints


_logger = logging.getLogger(__name__)

PriorSpec = str | optuna.Study
# Where ``Study.set_metric_names`` keeps the names among the study's system attributes.
_METRIC_NAMES_KEY = "study:metric_names"


@dataclass
class _CachedRead:
    """One read of a prior study and what is needed to tell whether it is still current."""

    n_trials: int
    has_unfinished: bool
    result: PriorStudy | SkippedPrior


class PriorLoader:
    """Loads prior studies once and reloads a study only when it gained trials.

    Which studies are priors (names, globs, or every study of the storage) is resolved at the
    first load: listing a large storage every trial costs more than the GP. Whether a study
    gained trials is one indexed lookup (does trial number ``n`` exist?), so a finished prior
    study is never read twice; a study read while it had running trials is read again.

    Args:
        prior_studies: Study objects, names or glob patterns; None means all studies in
            ``prior_storage``.
        prior_storage: Where named studies live.
    """

    def __init__(
        self,
        prior_studies: Sequence[PriorSpec] | None,
        prior_storage: str | BaseStorage | None,
    ) -> None:
        if isinstance(prior_studies, (str, optuna.Study)):
            prior_studies = [prior_studies]
        self._specs = list(prior_studies) if prior_studies is not None else None
        self._storage_spec = prior_storage
        if prior_storage is None and any(isinstance(s, str) for s in self._specs or []):
            raise PriorStudyError("Prior studies given by name need prior_storage=URL.")
        self._storage: BaseStorage | None = None
        self._handles: list[tuple[BaseStorage, int, str]] | None = None
        self._cache: dict[tuple[int, int], _CachedRead] = {}  # by (id(storage), study_id)
        # The last complete load per target name, used while the prior storage is unreadable.
        self._last: dict[str | None, tuple[list[PriorStudy], list[SkippedPrior]]] = {}
        self._unreadable = False

    @property
    def has_priors(self) -> bool:
        return self._specs is None and self._storage_spec is not None or bool(self._specs)

    def load(
        self, target_name: str | None, target_storage: BaseStorage | None = None
    ) -> tuple[list[PriorStudy], list[SkippedPrior]]:
        """Returns the usable prior tasks and the skipped ones, excluding the target study.

        If the prior storage cannot be read (a database restarting, a file removed, the
        network down) after one complete read, the priors of that read are returned: the
        study goes on with what it had, one warning says so, and the storage is read again
        at the next call. Before any complete read, the error is raised (as a
        ``PriorStudyError`` that names the storage).

        Args:
            target_name: Name of the target study.
            target_storage: Its storage. A prior with the target's name in the same storage
                (same object, database URL or journal file) is the target itself and is
                skipped; a namesake in another storage is a prior like any other. Without a
                storage, any prior with the target's name is skipped.
        """
        try:
            loaded = self._load(target_name, target_storage)
        except PriorStudyError:
            if target_name not in self._last:
                raise
            self._warn_unreadable("the prior studies could not be resolved")
            return self._last[target_name]
        except Exception as error:  # Any driver or file error: keep going with what we had.
            if target_name not in self._last:
                raise PriorStudyError(f"Cannot read the prior studies: {error}") from error
            self._warn_unreadable(f"{type(error).__name__}: {error}")
            return self._last[target_name]
        if self._unreadable:
            _logger.info("The prior storage is readable again.")
            self._unreadable = False
        self._last[target_name] = loaded
        return loaded

    def _warn_unreadable(self, reason: str) -> None:
        if not self._unreadable:
            _logger.warning(
                "Cannot read the prior storage (%s); proposing from the prior studies read "
                "before until it is back.",
                reason.splitlines()[0],
            )
        self._unreadable = True

    def _load(
        self, target_name: str | None, target_storage: BaseStorage | None
    ) -> tuple[list[PriorStudy], list[SkippedPrior]]:
        tasks: list[PriorStudy] = []
        skipped: list[SkippedPrior] = []
        target_key = storage_identity(target_storage) if target_storage is not None else None
        for storage, study_id, name in self._study_handles():
            same_storage = target_key is None or storage_identity(storage) == target_key
            if name == target_name and same_storage:
                skipped.append(SkippedPrior(name, "it is the target study itself"))
                continue
            result = self._load_cached(storage, study_id, name)
            (tasks if isinstance(result, PriorStudy) else skipped).append(result)  # type: ignore[arg-type]
        return tasks, skipped

    def _study_handles(self) -> list[tuple[BaseStorage, int, str]]:
        if self._handles is None:
            self._handles = self._resolve_handles()
        return self._handles

    def _resolve_handles(self) -> list[tuple[BaseStorage, int, str]]:
        handles = []
        string_specs = [s for s in self._specs or [] if isinstance(s, str)]
        if self._storage_spec is not None and (self._specs is None or string_specs):
            if self._storage is None:
                self._storage = open_storage(self._storage_spec)
            names = resolve_study_names(self._storage, string_specs if self._specs else None)
            for name in names:
                handles.append((self._storage, self._storage.get_study_id_from_name(name), name))
        for spec in self._specs or []:
            if isinstance(spec, optuna.Study):
                handles.append((spec._storage, spec._study_id, spec.study_name))
        return handles

    def _load_cached(
        self, storage: BaseStorage, study_id: int, name: str
    ) -> PriorStudy | SkippedPrior:
        key = (id(storage), study_id)  # The handles keep the storages alive, so ids are stable.
        cached = self._cache.get(key)
        if cached is not None and not _may_have_changed(storage, study_id, cached):
            return cached.result
        trials = storage.get_all_trials(study_id, deepcopy=False)
        directions = storage.get_study_directions(study_id)
        read = _CachedRead(
            len(trials),
            any(not t.state.is_finished() for t in trials),
            usable_trials(name, directions, trials, study_metric_names(storage, study_id)),
        )
        if isinstance(read.result, SkippedPrior):
            _logger.warning("Skipping prior study %r: %s.", name, read.result.reason)
        self._cache[key] = read
        return read.result


def study_metric_names(storage: BaseStorage, study_id: int) -> list[str] | None:
    """The study's metric names, as ``Study.metric_names`` reads them."""
    names = storage.get_study_system_attrs(study_id).get(_METRIC_NAMES_KEY)
    return list(names) if isinstance(names, (list, tuple)) else None


def _may_have_changed(storage: BaseStorage, study_id: int, cached: _CachedRead) -> bool:
    """Whether a study may differ from ``cached``: it had running trials, or gained one."""
    if cached.has_unfinished:
        return True
    try:
        storage.get_trial_id_from_study_id_trial_number(study_id, cached.n_trials)
    except KeyError:
        return False
    return True


def usable_trials(
    name: str,
    directions: Sequence[StudyDirection],
    trials: Sequence[FrozenTrial],
    metric_names: Sequence[str] | None = None,
) -> PriorStudy | SkippedPrior:
    """The completed trials with finite values of a study, with its pruned and failed trials,
    or why it has no usable trial.

    A COMPLETE trial with a NaN or infinite value counts as failed (a diverged run); a trial
    that failed before suggesting any parameter is left out. NaN and infinite intermediate
    values are left out of the curves, with one logged line per study.

    Args:
        name: The study name, for messages.
        directions: The study's directions.
        trials: All its trials, of any state.
        metric_names: The study's metric names, if it set them.
    """
    signs = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
    completed: list[FrozenTrial] = []
    pruned: list[FrozenTrial] = []
    failed: list[dict[str, Any]] = []
    for trial in trials:
        row = trial.values if trial.state == TrialState.COMPLETE and trial.values else None
        if row is not None and len(row) == len(signs) and all(math.isfinite(v) for v in row):
            completed.append(trial)
        elif trial.state == TrialState.PRUNED:
            pruned.append(trial)
        elif trial.state in (TrialState.FAIL, TrialState.COMPLETE) and trial.params:
            failed.append(trial.params)
    if not completed:
        return SkippedPrior(name, "it has no completed trial with finite values")
    distributions: dict[str, BaseDistribution] = {}
    for trial in completed + pruned:
        distributions.update(trial.distributions)
    constraints = [trial_constraints(t.system_attrs) for t in completed]
    keys = constraint_key_order([k for c in constraints for k in c])
    return PriorStudy(
        name,
        [t.params for t in completed],
        np.array([signs * np.asarray(t.values, dtype=float) for t in completed]),
        signs,
        tuple(metric_names) if metric_names is not None else None,
        {k: np.array([c.get(k, math.nan) for c in constraints]) for k in keys},
        len(trials),
        distributions,
        curves=_curves(name, completed),
        pruned_params=[t.params for t in pruned],
        pruned_curves=_curves(name, pruned),
        failed_params=failed,
    )


def _curves(name: str, trials: list[FrozenTrial]) -> list[Curve]:
    """The trials' curves; logs once how many NaN or infinite intermediate values were left
    out."""
    curves = [curve_of(t.intermediate_values) for t in trials]
    skipped = sum(n_skipped(t.intermediate_values, c) for t, c in zip(trials, curves))
    if skipped:
        _logger.warning(
            "Prior study %r: %d NaN or infinite intermediate values are left out of its "
            "learning curves.",
            name,
            skipped,
        )
    return curves
