"""Reading prior studies and matching their trials to the target search space.

Prior studies are only ever read: this module calls no storage method that writes, and it
refuses to open an SQLite or journal file that does not exist (opening would create it).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
import fnmatch
import logging
import math
import os
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_metabo._search_space import SearchSpace


_logger = logging.getLogger(__name__)

PriorSpec = str | optuna.Study


class PriorStudyError(ValueError):
    """Raised for prior studies or storages that cannot be used, with a message for users."""


@dataclass
class PriorTask:
    """The completed trials of one prior study, in the sampler's minimization convention.

    Attributes:
        name: The study name.
        params: One parameter dictionary per usable trial.
        values: Objective values, sign-flipped so that lower is better, shape ``(n,)``.
        n_total: Number of trials in the study, of any state.
        distributions: Union of the distributions its trials used, by parameter name.
    """

    name: str
    params: list[dict[str, Any]]
    values: np.ndarray
    n_total: int
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)


@dataclass
class SkippedPrior:
    """A prior study that was not used and why."""

    name: str
    reason: str


# How a target parameter that a prior study never tuned is handled.
LACKED_DEFAULT = "default"  # the prior's trials take the value given in ``prior_defaults``
LACKED_UNKNOWN = "unknown"  # the model learns the value the prior held it at
# How a parameter that the prior tuned but the target does not is handled.
EXTRA_DROPPED = "dropped"  # ignored: the prior's trials count alike whatever its value
EXTRA_FIXED = "fixed_params"  # a model input; target trials sit at the ``fixed_params`` value


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
class EncodedPrior:
    """A prior task matched to the target space.

    Attributes:
        name: The study name.
        x: Normalized inputs, shape ``(n, dim)``; NaN where a trial lacks a parameter (the
            columns in ``unknown_columns`` for every trial; others where a branch was off).
        y: Objective values (lower is better), shape ``(n,)``.
        n_available: Usable trials before subsampling.
        n_total: All trials in the study.
        unknown_columns: Columns of target parameters the study never tuned, without a
            default: the model learns the value the study held them at.
        match: How its parameters line up with the target's.
        params: The parameters of a trial at each row, all of them (also those outside the
            target space).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    n_available: int
    n_total: int
    unknown_columns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    match: ParameterMatch = field(default_factory=ParameterMatch)
    params: list[dict[str, Any]] = field(default_factory=list)


def open_storage(storage: str | BaseStorage) -> BaseStorage:
    """Opens a prior storage for reading, with a clear error when that is impossible.

    Args:
        storage: A storage URL (``sqlite:///``, ``postgresql://``, ``mysql+pymysql://``), a path
            to a journal file (``*.log``, ``*.journal``, or ``journal:///path``), or a storage.
    """
    if isinstance(storage, BaseStorage):
        return storage
    if not isinstance(storage, str):
        raise TypeError(f"prior_storage must be a URL or an Optuna storage, not {storage!r}.")
    if storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///") :].split("?")[0]
        if path not in ("", ":memory:") and not os.path.exists(path):
            raise PriorStudyError(f"Prior storage {storage!r}: the file {path!r} does not exist.")
    journal_path = _journal_path(storage)
    if journal_path is not None:
        return _open_journal(journal_path)
    try:
        return optuna.storages.RDBStorage(storage, skip_table_creation=True)
    except Exception as error:  # Any driver error becomes a message that names the URL.
        cause = _root_cause(error).replace(storage, _redact(storage))
        raise PriorStudyError(
            f"Cannot open prior storage {_redact(storage)!r}: {cause}"
        ) from error


def _journal_path(storage: str) -> str | None:
    if storage.startswith("journal:///"):
        return storage[len("journal:///") - 1 :]
    if "://" not in storage and storage.endswith((".log", ".journal", ".jsonl")):
        return storage
    return None


def _open_journal(path: str) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal import JournalStorage

    if not os.path.exists(path):
        raise PriorStudyError(f"Prior journal file {path!r} does not exist.")
    return JournalStorage(JournalFileBackend(path))


def storage_identity(storage: BaseStorage) -> str:
    """A key equal for two storage objects that open the same database or journal file.

    Args:
        storage: Any Optuna storage, possibly wrapped in Optuna's cache layer.
    """
    inner = getattr(storage, "_backend", storage)  # _CachedStorage wraps the RDB storage.
    url = getattr(inner, "url", None)
    if isinstance(url, str):
        if url.startswith("sqlite:///"):
            return "sqlite:///" + os.path.abspath(url[len("sqlite:///") :].split("?")[0])
        return url
    backend = getattr(inner, "_backend", None)  # JournalStorage holds its backend here.
    path = getattr(backend, "_file_path", None)
    if isinstance(path, str):
        return "journal:" + os.path.abspath(path)
    redis_url = getattr(backend, "_url", None)
    if isinstance(redis_url, str):
        return "redis:" + redis_url
    return f"object:{id(inner)}"


def _root_cause(error: BaseException) -> str:
    """The innermost cause's first line, which names the real problem (refused, auth...)."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def resolve_study_names(storage: BaseStorage, patterns: Sequence[str] | None) -> list[str]:
    """Expands names and glob patterns against the studies in a storage.

    Args:
        storage: The prior storage.
        patterns: Study names or glob patterns; None means every study.

    Raises:
        PriorStudyError: If a name or pattern matches nothing. The message lists what exists.
    """
    try:
        available = [s.study_name for s in storage.get_all_studies()]
    except Exception as error:
        raise PriorStudyError(f"Cannot list the studies of the prior storage: {error}") from error
    if patterns is None:
        return sorted(available)
    names: list[str] = []
    for pattern in patterns:
        matches = sorted(fnmatch.filter(available, pattern))
        if not matches:
            listing = ", ".join(sorted(available)) or "(none)"
            raise PriorStudyError(
                f"No prior study matches {pattern!r}. Studies in the prior storage: {listing}."
            )
        names.extend(m for m in matches if m not in names)
    return names


@dataclass
class _CachedRead:
    """One read of a prior study and what is needed to tell whether it is still current."""

    n_trials: int
    has_unfinished: bool
    result: PriorTask | SkippedPrior


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

    @property
    def has_priors(self) -> bool:
        return self._specs is None and self._storage_spec is not None or bool(self._specs)

    def load(
        self, target_name: str | None, target_storage: BaseStorage | None = None
    ) -> tuple[list[PriorTask], list[SkippedPrior]]:
        """Returns the usable prior tasks and the skipped ones, excluding the target study.

        Args:
            target_name: Name of the target study.
            target_storage: Its storage. A prior with the target's name in the same storage
                (same object, database URL or journal file) is the target itself and is
                skipped; a namesake in another storage is a prior like any other. Without a
                storage, any prior with the target's name is skipped.
        """
        tasks: list[PriorTask] = []
        skipped: list[SkippedPrior] = []
        target_key = storage_identity(target_storage) if target_storage is not None else None
        for storage, study_id, name in self._study_handles():
            same_storage = target_key is None or storage_identity(storage) == target_key
            if name == target_name and same_storage:
                skipped.append(SkippedPrior(name, "it is the target study itself"))
                continue
            result = self._load_cached(storage, study_id, name)
            (tasks if isinstance(result, PriorTask) else skipped).append(result)  # type: ignore[arg-type]
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
    ) -> PriorTask | SkippedPrior:
        key = (id(storage), study_id)  # The handles keep the storages alive, so ids are stable.
        cached = self._cache.get(key)
        if cached is not None and not _may_have_changed(storage, study_id, cached):
            return cached.result
        trials = storage.get_all_trials(study_id, deepcopy=False)
        directions = storage.get_study_directions(study_id)
        read = _CachedRead(
            len(trials),
            any(not t.state.is_finished() for t in trials),
            usable_trials(name, directions, trials),
        )
        if isinstance(read.result, SkippedPrior):
            _logger.warning("Skipping prior study %r: %s.", name, read.result.reason)
        self._cache[key] = read
        return read.result


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
    name: str, directions: Sequence[StudyDirection], trials: Sequence[FrozenTrial]
) -> PriorTask | SkippedPrior:
    """The completed, finite trials of a single-objective study, or why there are none.

    Args:
        name: The study name, for messages.
        directions: The study's directions.
        trials: All its trials, of any state.
    """
    if len(directions) != 1:
        return SkippedPrior(name, f"it is multi-objective ({len(directions)} objectives)")
    sign = 1.0 if directions[0] == StudyDirection.MINIMIZE else -1.0
    params, values = [], []
    distributions: dict[str, BaseDistribution] = {}
    for trial in trials:
        value = trial.values[0] if trial.state == TrialState.COMPLETE and trial.values else None
        if value is None or not math.isfinite(value):
            continue
        params.append(trial.params)
        values.append(sign * value)
        distributions.update(trial.distributions)
    if not values:
        return SkippedPrior(name, "it has no completed trial with a finite value")
    return PriorTask(name, params, np.asarray(values), len(trials), distributions)


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


def fixed_parameter_space(
    tasks: Sequence[PriorTask], fixed_params: Mapping[str, Any], tuned: Sequence[str]
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
    rows, values, trial_params = [], [], []
    for params, value in zip(task.params, task.values):
        row = space.encode({**held, **{n: v for n, v in params.items() if n in kept}})
        if row is not None:
            rows.append(row)
            values.append(value)
            trial_params.append(params)
    if not rows:
        return SkippedPrior(task.name, "none of its trials lies inside the target search space")
    x, y, first = _merge_duplicates(np.array(rows), np.array(values))
    keep = subsample_indices(y, max_trials, rng)
    unknown = [name for name, how in match.lacked.items() if how == LACKED_UNKNOWN]
    columns = np.concatenate([space.columns_of(n) for n in unknown] or [np.zeros(0, np.int64)])
    kept_params = [trial_params[first[i]] for i in keep]
    return EncodedPrior(
        task.name, x[keep], y[keep], len(y), task.n_total, columns, match, kept_params
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
    absent = -7.0  # outside every encoded range, so it stands for NaN while rows are compared
    key = np.where(np.isnan(x), absent, np.round(x, 9))
    unique_key, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=y, minlength=len(unique_key))
    counts = np.bincount(inverse, minlength=len(unique_key))
    return np.where(unique_key == absent, np.nan, unique_key), sums / counts, first


def subsample_indices(y: np.ndarray, max_points: int, rng: np.random.RandomState) -> np.ndarray:
    """Sorted indices of at most ``max_points`` entries: about half the best, half a spread.

    The entries are taken in a fixed priority order that alternates the next best entry with
    the next entry of a random permutation, so a smaller cap keeps a subset of what a larger
    one keeps. Refits whose cap shrinks by a point (the target gained a trial) then see almost
    the same rows, and a warm start from the previous fit stays close to the optimum.

    Args:
        y: Values, lower is better, shape ``(n,)``.
        max_points: The cap.
        rng: Random source for the spread.
    """
    if len(y) <= max_points:
        return np.arange(len(y))
    alternating = np.column_stack([np.argsort(y, kind="stable"), rng.permutation(len(y))])
    alternating = alternating.reshape(-1)  # (2n,): best, random, next best, next random, ...
    _, first_seen = np.unique(alternating, return_index=True)
    priority = alternating[np.sort(first_seen)]  # each entry once, in alternating order
    return np.sort(priority[:max_points])
