"""``MetaBOSampler``: with ``_target_trials``, the only modules that touch ``Study`` and
``FrozenTrial``."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import json
import logging
import math
import threading
from typing import Any
from typing import TYPE_CHECKING

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.samplers import RandomSampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_metabo._core.output_transform import TRANSFORMS
from optuna_metabo._core.search_space import SearchSpace
from optuna_metabo._core.types import EngineSettings
from optuna_metabo._core.types import ProposalSource
from optuna_metabo._history.outputs import check_constraint_values
from optuna_metabo._history.outputs import constraint_key_order
from optuna_metabo._history.outputs import match_outputs
from optuna_metabo._history.outputs import MAX_OBJECTIVES
from optuna_metabo._history.outputs import prior_output_tasks
from optuna_metabo._history.outputs import PriorStudy
from optuna_metabo._history.outputs import TargetOutputs
from optuna_metabo._history.prior_studies import PriorLoader
from optuna_metabo._history.prior_studies import PriorSpec
from optuna_metabo._history.priors import encode_task
from optuna_metabo._history.priors import EncodedPrior
from optuna_metabo._history.priors import fixed_parameter_space
from optuna_metabo._history.priors import parameter_handling
from optuna_metabo._history.priors import SkippedPrior
from optuna_metabo._history.target_space import learn_conditions
from optuna_metabo._history.target_space import union_search_space
from optuna_metabo._last_proposal import LastProposal
from optuna_metabo._target_trials import encode_trials
from optuna_metabo._target_trials import failure_rows
from optuna_metabo._target_trials import metric_names
from optuna_metabo._target_trials import n_constraints_before
from optuna_metabo._target_trials import n_space_defining
from optuna_metabo._target_trials import n_unshared_before
from optuna_metabo._target_trials import objective_signs
from optuna_metabo._target_trials import params_of
from optuna_metabo._target_trials import target_outputs
from optuna_metabo._target_trials import target_trials
from optuna_metabo._target_trials import TargetTrials
from optuna_metabo._target_trials import unfinished_rows
from optuna_metabo._vocabulary import CONSTRAINTS_KEY
from optuna_metabo._vocabulary import LACKED_UNKNOWN
from optuna_metabo._vocabulary import SOURCE_FALLBACK
from optuna_metabo._vocabulary import SOURCE_INDEPENDENT
from optuna_metabo._vocabulary import SOURCE_OF
from optuna_metabo._vocabulary import SOURCE_STARTUP
from optuna_metabo._vocabulary import SYSTEM_ATTR_SHARED_PARAMS
from optuna_metabo._vocabulary import USER_ATTR_ACQUISITION
from optuna_metabo._vocabulary import USER_ATTR_FAILURE
from optuna_metabo._vocabulary import USER_ATTR_FEASIBILITY
from optuna_metabo._vocabulary import USER_ATTR_PREDICTED_MEAN
from optuna_metabo._vocabulary import USER_ATTR_PREDICTED_STD
from optuna_metabo._vocabulary import USER_ATTR_SOURCE


if TYPE_CHECKING:
    from optuna.study import Study

    from optuna_metabo._core.multi_output import MultiOutputEngine
    from optuna_metabo._core.proposal import Proposal
    from optuna_metabo._core.proposal import ProposalEngine


_logger = logging.getLogger(__name__)

_MISSING = object()
_MAX_CLASH_RETRIES = 2
_NUMERICAL_ERRORS = (RuntimeError, ValueError, ArithmeticError, np.linalg.LinAlgError)


class MetaBOSampler(BaseSampler):
    """Bayesian optimization that transfers knowledge from earlier ("prior") Optuna studies.

    A multi-task Gaussian process (ICM kernel: Matérn-5/2 ARD x task ``IndexKernel``) is fitted
    jointly on the prior studies and the target study, each standardized on its own, and the
    next trial maximizes log expected improvement on the target. With priors, the very first
    trial already comes from them; without priors it is a plain GP sampler. From 10 target
    trials on, when a GP on the target alone predicts the target's trials clearly better
    (leave-one-out), the trial is chosen without the priors: a guard against negative transfer.

    With 2 to 4 objectives, each objective has such a GP over the priors that recorded a metric
    of the same name (``study.set_metric_names``; else by position), and the next trial
    maximizes log expected hypervolume improvement. Each constraint (``constraints_func`` or
    ``trial.set_constraint``) has one too, and weights the acquisition by the probability of
    feasibility.

    Args:
        prior_studies:
            ``optuna.Study`` objects, study names or glob patterns (``"bert-*"``) resolved in
            ``prior_storage``. ``None`` with a ``prior_storage`` uses every study there except
            the target. Names are resolved at the first trial; a prior study is re-read only
            when it gained trials. Prior studies are only read.
        prior_storage:
            A storage URL (``sqlite:///...``, ``postgresql://...``, ``mysql+pymysql://...``), a
            journal file path (``*.log``) or an Optuna storage object.
        seed:
            Seed for every random choice; the same seed gives the same suggestions.
        prior_defaults:
            Values at which the prior studies held parameters that they did not tune and the
            target tunes (``{"epochs": 5}``). A prior lacking a parameter without a default is
            still used: the model learns the value it held it at (see ``prior_summary()``).
        fixed_params:
            Values at which the target holds parameters that prior studies tuned
            (``{"momentum": 0.9}``). Those parameters become model inputs, so prior trials
            near the value count more. Without it, such parameters are dropped: a prior's
            trials count alike whatever their value.
        independent_sampler:
            Samples parameters the target has not used in a completed trial yet (new or
            dynamic ones) and the startup trials when there are no priors. Defaults to
            ``RandomSampler(seed)``.
        n_startup_trials:
            Random trials before the GP is used, only when no prior is usable.
        n_prior_design_trials:
            Number of first target trials chosen among the best prior configurations, as a
            greedy portfolio across the prior tasks (see "How it works" in the README).
        rank:
            Rank of the task covariance factor of the ICM kernel.
        output_transform:
            Per-task transform of objective values: ``"standardize"`` or ``"copula"``.
        max_prior_trials:
            Cap on prior points the GP is conditioned on, over all prior studies.
        max_fit_points:
            Cap on points used to fit the GP hyperparameters each trial.
        device:
            Torch device for the GP, ``"cpu"`` or ``"cuda"``.
        warn_independent_sampling:
            Log a warning when a parameter falls back to the independent sampler.
        constraints_func:
            Maps a finished trial to its constraint values, feasible where all are at most
            zero; evaluated after each complete or pruned trial and stored as Optuna's samplers
            store them. Constraints set in the objective with ``trial.set_constraint`` are
            used too. Each constraint gets a multi-task GP over the target and the priors that
            stored the same constraint (same key), and the acquisition is weighted by the
            probability of feasibility.
        engine_settings:
            Further knobs of the numeric core, for experiments (``optuna_metabo.EngineSettings``;
            the defaults are the measured choices). Its ``rank``, ``output_transform``,
            ``max_fit_points``, ``n_prior_design_trials`` and ``device`` are replaced by the
            arguments above.

    The sampler writes nothing to the study beyond each trial's ``metabo:*`` user attributes
    and the shared point of a running trial (a system attribute other workers read). For the
    optuna-dashboard note and plots, pass ``optuna_metabo.DashboardCallback()`` to
    ``study.optimize``.
    """

    def __init__(
        self,
        prior_studies: Sequence[PriorSpec] | PriorSpec | None = None,
        *,
        prior_storage: str | BaseStorage | None = None,
        seed: int | None = None,
        prior_defaults: Mapping[str, Any] | None = None,
        fixed_params: Mapping[str, Any] | None = None,
        independent_sampler: BaseSampler | None = None,
        n_startup_trials: int = 5,
        n_prior_design_trials: int = 5,
        rank: int = 1,
        output_transform: str = "standardize",
        max_prior_trials: int = 500,
        max_fit_points: int = 300,
        device: str = "cpu",
        warn_independent_sampling: bool = True,
        constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
        engine_settings: EngineSettings | None = None,
    ) -> None:
        _validate_arguments(rank, output_transform, max_prior_trials, max_fit_points, device)
        self._prior_defaults = _parameter_values("prior_defaults", prior_defaults)
        self._fixed_params = _parameter_values("fixed_params", fixed_params)
        self._loader = PriorLoader(prior_studies, prior_storage)  # type: ignore[arg-type]
        self._seed = seed
        self._rng = np.random.RandomState(seed)
        self._sobol_seed = int(self._rng.randint(1 << 30))
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        self._n_startup_trials = n_startup_trials
        self._max_prior_trials = max_prior_trials
        self._settings = dataclasses.replace(
            engine_settings or EngineSettings(),
            rank=rank,
            output_transform=output_transform,
            max_fit_points=max_fit_points,
            n_prior_design_trials=n_prior_design_trials,
            device=device,
        )
        self._constraints_func = constraints_func
        # The engine keeps the last fits to warm-start the next; by (objectives, constraints).
        self._engine: tuple[Any, ProposalEngine | MultiOutputEngine] | None = None
        self._encoded_cache: (
            tuple[Any, list[list[EncodedPrior]], list[SkippedPrior], dict[str, str]] | None
        ) = None
        self._prior_values: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._warn_independent_sampling = warn_independent_sampling
        self._summary: dict[str, Any] = {
            "used": [],
            "skipped": [],
            "task_similarity": {},
            "target_unfinished_used": 0,
        }
        self._summary_logged = False
        # The latest model proposal (see ``last_proposal``).
        self._last: LastProposal | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]  # Locks do not pickle; e.g. Dask ships samplers to its workers.
        state["_last"] = None  # It holds a fitted GP; only plots read it.
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- BaseSampler interface
    def reseed_rng(self) -> None:
        self._rng.seed()
        self._independent_sampler.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        _check_objectives(study)
        # Pruned trials define the space too: under a pruner most trials are pruned.
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        defining = study._get_trials(deepcopy=False, states=states, use_cache=True)
        return union_search_space([t.distributions for t in defining])

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        _check_objectives(study)
        if not search_space:
            return {}
        return self._suggest(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _check_objectives(study)
        value = self._prior_values_of(study, trial).get(param_name, _MISSING)
        if value is not _MISSING and _contains(param_distribution, value):
            return value
        if self._warn_independent_sampling and n_space_defining(study) > 0:
            _logger.warning(
                "Trial %d: parameter %r is outside the relative search space; it is sampled by "
                "%s.",
                trial.number,
                param_name,
                type(self._independent_sampler).__name__,
            )
        if USER_ATTR_SOURCE not in trial.user_attrs:
            self._set_attrs(study, trial, {USER_ATTR_SOURCE: SOURCE_INDEPENDENT})
        return self._independent_sampler.sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent_sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        if self._constraints_func is not None and state in (
            TrialState.COMPLETE,
            TrialState.PRUNED,
        ):
            constraints = check_constraint_values(
                self._constraints_func(trial), trial.number, n_constraints_before(study)
            )
            study._storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_KEY, constraints)
        self._independent_sampler.after_trial(study, trial, state, values)

    # ------------------------------------------------------------------------ public extras
    def prior_summary(self) -> dict[str, Any]:
        """What the sampler used from the priors, as plain data.

        Returns:
            ``{"used": [{"study_name", "n_trials_used", "n_trials_usable", "n_trials_total",
            "n_pruned_used", "n_failed_used"}], "skipped": [{"study_name", "reason"}],
            "task_similarity": {study_name: corr}, "target_unfinished_used": n}``, where
            ``corr`` in [-1, 1] is the learned correlation between a prior task and the
            target (filled once the GP has been fitted), ``n_pruned_used`` and
            ``n_failed_used`` count the prior's pruned and failed trials given to the model,
            and ``n`` the target's pruned and failed trials the model used at the latest
            trial (imputed, see docs/pruning.md).
        """
        return json.loads(json.dumps(self._summary))

    def prior_fronts(self, study: Study) -> dict[str, np.ndarray]:
        """The Pareto front of each prior study that informs every objective of ``study``.

        Args:
            study: The target study.

        Returns:
            By prior study name, its non-dominated trials' values ``(n, k)`` for the target's
            objectives, in the target's order, as the prior recorded them (non-dominated in the
            prior's own directions).
        """
        from optuna_metabo._core.pareto import nondominated_mask

        outputs = target_outputs(study, target_trials(study, None).completed)
        fronts: dict[str, np.ndarray] = {}
        for prior in self._load_priors(study)[0]:
            match = match_outputs(prior, outputs)
            if isinstance(match, SkippedPrior) or None in match.columns:
                continue
            columns = [int(c) for c in match.columns if c is not None]
            lower_is_better = prior.values[:, columns]  # (n, k), in the prior's directions
            front = lower_is_better[nondominated_mask(lower_is_better)]
            fronts[prior.name] = front * prior.signs[columns]  # As the prior recorded them.
        return fronts

    def explain_priors(self, study: Study) -> dict[str, Any]:
        """Which prior studies this sampler would use for ``study``'s next trial and how, and
        why it skips the others, without suggesting a trial.

        Args:
            study: The target study; its completed and pruned trials define the search space
                (the priors' shared parameters while it has none).

        Returns:
            ``prior_summary()``'s ``"used"`` and ``"skipped"`` for that space, and the space
            itself, ``"search_space"``: ``{name: distribution}``.
        """
        history = target_trials(study, None)
        defining = [t.distributions for t in history.completed + history.pruned]
        distributions = union_search_space(defining) or self._prior_search_space(study)
        space = self._search_space(study, distributions, history)
        self._encoded_priors(study, space, self._target_outputs(study, history))
        summary = self.prior_summary()
        return {
            "used": summary["used"],
            "skipped": summary["skipped"],
            "search_space": space.distributions,
        }

    def last_proposal(self) -> LastProposal | None:
        """What the sampler knew when it chose its latest model-phase trial (the search space,
        the point and the posterior), read-only; None before one. ``DashboardCallback`` draws
        its slice plot from it."""
        return self._last

    # ---------------------------------------------------------------------------- internals
    def _suggest(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        history = target_trials(study, trial)
        space = self._search_space(study, search_space, history)
        outputs = self._target_outputs(study, history)
        encoded = self._encoded_priors(study, space, outputs)
        n_done = len(history.completed)
        if not any(encoded[: outputs.n_objectives]) and n_done < self._n_startup_trials:
            params = space.decode(space.sobol_point(trial.number, self._sobol_seed))
            self._set_attrs(study, trial, {USER_ATTR_SOURCE: SOURCE_STARTUP})
            self._share_point(study, trial, params)
            return params
        try:
            params = self._propose_and_share(study, trial, space, encoded, outputs, history)
        except _NUMERICAL_ERRORS as error:
            _logger.warning(
                "MetaBOSampler could not fit or optimize the GP for trial %d (%s: %s); "
                "falling back to %s.",
                trial.number,
                type(error).__name__,
                error,
                type(self._independent_sampler).__name__,
            )
            self._set_attrs(study, trial, {USER_ATTR_SOURCE: SOURCE_FALLBACK})
            return {}
        return params

    def _propose_and_share(
        self,
        study: Study,
        trial: FrozenTrial,
        space: SearchSpace,
        encoded: list[list[EncodedPrior]],
        outputs: TargetOutputs,
        history: TargetTrials,
    ) -> dict[str, Any]:
        """Proposes, shares the point, then re-reads the running trials: a worker that finds its
        point already taken by another running trial proposes again with that trial as pending.

        Each worker checks only after its own point is stored, so of two workers that chose the
        same point at least one sees the other's and moves (with their models fitted on
        different histories, taking the next-best point for each unshared trial ahead does not
        rule that out).
        """
        priors = [p for per_output in encoded for p in per_output]
        for _ in range(_MAX_CLASH_RETRIES + 1):
            proposal = self._propose(study, trial, space, encoded, outputs, history)
            params = space.decode(proposal.x)
            if proposal.source == ProposalSource.PRIOR_DESIGN:
                params = _exact_prior_values(priors, space, proposal.x, params)
            self._record(study, trial, proposal, params)
            history = target_trials(study, trial)
            if not any(params_of(t) == params for t in history.running):
                break
        if proposal.source == ProposalSource.PRIOR_DESIGN:
            self._remember_prior_values(trial, _prior_params_at(priors, space, proposal.x))
        else:  # A branch the target has not run yet takes the priors' best values for it.
            self._remember_prior_values(trial, _best_prior_params_alike(priors, space, proposal.x))
        sign = float(objective_signs(study)[0])
        self._last = LastProposal(
            trial.number, space, proposal.x, SOURCE_OF[proposal.source], proposal.view, sign
        )
        return params

    def _target_outputs(self, study: Study, history: TargetTrials) -> TargetOutputs:
        """The target's outputs. Before any target trial recorded constraints, a sampler with
        a ``constraints_func`` expects those the prior studies recorded. Failures are
        modelled once a target or prior trial has failed."""
        outputs = target_outputs(study, history.completed)
        priors = self._load_priors(study)[0]
        failure = bool(history.failed) or any(p.failed_params for p in priors)
        keys = outputs.constraint_keys
        if not keys and self._constraints_func is not None:
            keys = constraint_key_order([k for p in priors for k in p.constraints])
        return dataclasses.replace(outputs, constraint_keys=keys, failure=failure)

    def _search_space(
        self,
        study: Study,
        search_space: dict[str, BaseDistribution],
        history: TargetTrials,
    ) -> SearchSpace:
        """The target space with the branch conditions its trials show and the fixed params."""
        finished = history.completed + history.pruned
        conditions = learn_conditions([t.params for t in finished], search_space)
        tasks, _ = self._load_priors(study)
        fixed = fixed_parameter_space(tasks, self._fixed_params, list(search_space))
        return SearchSpace(search_space, conditions, fixed)

    def _prior_values_of(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        """Values from a prior configuration for parameters outside the relative search space.

        A prior-design trial takes the branch parameters the target has not seen yet from the
        prior configuration it re-uses. A trial that starts before any target trial finished
        takes all of them from the prior design (``_cold_start_params``).
        """
        first = trial._trial_id not in self._prior_values and n_space_defining(study) == 0
        if first and self._loader.has_priors:
            return self._cold_start_params(study, trial)
        return self._prior_values.get(trial._trial_id, {})

    def _remember_prior_values(self, trial: FrozenTrial, params: dict[str, Any]) -> None:
        if len(self._prior_values) >= 64:  # Only the latest few trials can still ask.
            self._prior_values.pop(next(iter(self._prior_values)))
        self._prior_values[trial._trial_id] = params

    def _cold_start_params(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        """The prior-design point of a trial that starts before any target trial finished.

        Its space comes from the priors, since the target has not defined one yet; the
        objective's own distributions are checked value by value in ``sample_independent``, so
        a prior whose bounds, log flag or choices differ never breaks the trial.
        """
        with self._lock:
            if trial._trial_id not in self._prior_values:
                space = self._prior_search_space(study)
                params = self._suggest(study, trial, space) if space else {}
                # ``_suggest`` may have remembered the re-used prior's other parameters.
                self._remember_prior_values(
                    trial, {**self._prior_values.get(trial._trial_id, {}), **params}
                )
            return self._prior_values[trial._trial_id]

    def _prior_search_space(self, study: Study) -> dict[str, BaseDistribution]:
        """The space of the first trial, before the target has defined one: the parameters
        that at least half of the usable priors share (by name and kind), with the most recent
        such prior's distribution. Priors lacking one of them sit out that first fit only."""
        tasks, _ = self._load_priors(study)
        votes: dict[tuple[str, type], list[BaseDistribution]] = {}
        for task in tasks:
            for name, dist in task.distributions.items():
                votes.setdefault((name, type(dist)), []).append(dist)
        space: dict[str, BaseDistribution] = {}
        for (name, _), dists in sorted(votes.items(), key=lambda kv: -len(kv[1])):
            if 2 * len(dists) >= len(tasks) and name not in space and not dists[-1].single():
                space[name] = dists[-1]
        return space

    def _load_priors(self, study: Study) -> tuple[list[PriorStudy], list[SkippedPrior]]:
        if not self._loader.has_priors:
            return [], []
        return self._loader.load(study.study_name, study._storage)

    def _encoded_priors(
        self, study: Study, space: SearchSpace, outputs: TargetOutputs
    ) -> list[list[EncodedPrior]]:
        """The encoded prior tasks of each target output (objectives, then constraints)."""
        studies, skipped = self._load_priors(study)
        # Studies are the loader's cached objects, so identity tells whether a prior changed.
        key = (repr(space.distributions), outputs, tuple(id(t) for t in studies), len(skipped))
        if self._encoded_cache is None or self._encoded_cache[0] != key:
            self._encoded_cache = (key, *self._encode_priors(studies, skipped, space, outputs))
        _, encoded, all_skipped, matched = self._encoded_cache
        self._update_summary(encoded, all_skipped, matched, outputs)
        return encoded

    def _encode_priors(
        self,
        studies: list[PriorStudy],
        skipped: list[SkippedPrior],
        space: SearchSpace,
        outputs: TargetOutputs,
    ) -> tuple[list[list[EncodedPrior]], list[SkippedPrior], dict[str, str]]:
        per_output, unmatched, matched = prior_output_tasks(studies, outputs)
        for reason in unmatched:
            _logger.warning("Skipping prior study %r: %s.", reason.name, reason.reason)
        per_study = max(1, self._max_prior_trials // max(len(matched), 1))
        encoded: list[list[EncodedPrior]] = []
        failed: dict[str, SkippedPrior] = {}
        for tasks in per_output:
            encoded.append([])
            for task in tasks:
                # Subsampling uses its own seeded stream so it is identical on every trial.
                result = encode_task(
                    task, space, per_study, np.random.RandomState(0), self._prior_defaults
                )
                if isinstance(result, SkippedPrior):
                    failed.setdefault(result.name, result)
                else:
                    encoded[-1].append(result)
        used = {p.name for per_output_priors in encoded for p in per_output_priors}
        for name, reason in failed.items():
            if name not in used:
                _logger.warning("Skipping prior study %r: %s.", name, reason.reason)
        not_used = [r for n, r in failed.items() if n not in used]
        matched = {n: how for n, how in matched.items() if n in used}
        return encoded, [*skipped, *unmatched, *not_used], matched

    def _propose(
        self,
        study: Study,
        trial: FrozenTrial,
        space: SearchSpace,
        encoded: list[list[EncodedPrior]],
        outputs: TargetOutputs,
        history: TargetTrials,
    ) -> Proposal:
        from optuna_metabo._core.multi_output import MultiOutputEngine
        from optuna_metabo._core.multi_output import OutputData

        signs = objective_signs(study)
        target_x, target_y = encode_trials(
            space, history.completed, signs, outputs.constraint_keys
        )
        pending_x, _ = encode_trials(space, history.running)
        # Pruned and failed configurations are never proposed again.
        unfinished_x, _ = encode_trials(space, history.unfinished)
        n_ahead = n_unshared_before(history.running, trial)
        # A single objective learns from the pruned and failed trials (none with several).
        unfinished = unfinished_rows(space, history)
        unfinished = unfinished if outputs.n_objectives == 1 else None
        engine = self._engine_for(outputs)
        if isinstance(engine, MultiOutputEngine):
            data = [
                OutputData(priors, target_y[:, i], i >= outputs.n_objectives)
                for i, priors in enumerate(encoded[: target_y.shape[1]])
            ]
            data[0] = dataclasses.replace(data[0], unfinished=unfinished)
            if outputs.failure:
                extra = failure_rows(space, history.pruned, history.failed)
                data.append(OutputData(encoded[-1], -np.ones(len(target_x)), True, extra=extra))
            proposal = engine.propose(
                space, data, target_x, pending_x, unfinished_x, self._rng, n_ahead
            )
        else:
            proposal = engine.propose(
                space,
                encoded[0],
                target_x,
                target_y[:, 0],
                pending_x,
                unfinished_x,
                self._rng,
                n_ahead,
                unfinished,
            )
        self._summary["task_similarity"] = proposal.similarity
        self._summary["target_unfinished_used"] = proposal.n_imputed
        self._record_held_values(space, proposal.held_values)
        self._log_summary_once()
        return proposal

    def _engine_for(self, outputs: TargetOutputs) -> ProposalEngine | MultiOutputEngine:
        """The engine for these outputs; a new one (fitting from scratch) when they change."""
        from optuna_metabo._core.multi_output import MultiOutputEngine
        from optuna_metabo._core.proposal import ProposalEngine

        key = (outputs.n_objectives, outputs.constraint_keys, outputs.failure)
        if self._engine is None or self._engine[0] != key:
            settings = self._settings
            n_constraints = len(outputs.constraint_keys) + int(outputs.failure)
            engine: ProposalEngine | MultiOutputEngine = (
                ProposalEngine(settings)
                if key == (1, (), False)
                else MultiOutputEngine(
                    settings, outputs.n_objectives, n_constraints, outputs.failure
                )
            )
            self._engine = (key, engine)
        return self._engine[1]

    def _record(
        self, study: Study, trial: FrozenTrial, proposal: Proposal, params: dict[str, Any]
    ) -> None:
        attrs = {
            **_prediction_attrs(study, proposal),
            USER_ATTR_FEASIBILITY: proposal.feasibility,
            USER_ATTR_FAILURE: proposal.failure_probability,
            USER_ATTR_ACQUISITION: proposal.acquisition,
            USER_ATTR_SOURCE: SOURCE_OF[proposal.source],
        }
        # No prediction is recorded before the target has two results (see Proposal.mean).
        attrs = {k: v for k, v in attrs.items() if not _is_nan(v)}
        self._set_attrs(study, trial, {k: _json_safe(v) for k, v in attrs.items()})
        self._share_point(study, trial, params)

    @staticmethod
    def _share_point(study: Study, trial: FrozenTrial, params: dict[str, Any]) -> None:
        """Stores the chosen point so that other workers treat it as pending right away."""
        study._storage.set_trial_system_attr(
            trial._trial_id, SYSTEM_ATTR_SHARED_PARAMS, json.dumps(params)
        )

    @staticmethod
    def _set_attrs(study: Study, trial: FrozenTrial, attrs: dict[str, Any]) -> None:
        for key, value in attrs.items():
            study._storage.set_trial_user_attr(trial._trial_id, key, value)
            trial.user_attrs[key] = value

    def _update_summary(
        self,
        encoded: list[list[EncodedPrior]],
        skipped: list[SkippedPrior],
        matched: dict[str, str],
        outputs: TargetOutputs,
    ) -> None:
        first: dict[str, EncodedPrior] = {}
        for per_output in encoded:
            for prior in per_output:
                first.setdefault(prior.name, prior)
        several = outputs.n_objectives > 1 or bool(outputs.constraint_keys)
        self._summary["used"] = [
            {
                "study_name": p.name,
                "n_trials_used": int(len(p.y)),
                "n_trials_usable": int(p.n_available),
                "n_trials_total": int(p.n_total),
                **_unfinished_counts(p),
                **parameter_handling(p, self._prior_defaults),
                **({"outputs": matched.get(p.name, "")} if several else {}),
            }
            for p in first.values()
        ]
        self._summary["skipped"] = [{"study_name": s.name, "reason": s.reason} for s in skipped]
        if several:
            self._summary["objectives"] = [
                outputs.objective_label(i) for i in range(outputs.n_objectives)
            ]
            self._summary["constraints"] = list(outputs.constraint_keys)

    def _record_held_values(self, space: SearchSpace, held: dict[str, dict[int, float]]) -> None:
        """Writes each prior's learned held values, in target units, into the summary."""
        for entry in self._summary["used"]:
            columns = held.get(entry["study_name"], {})
            for name, how in entry["lacked"].items():
                if how["handling"] == LACKED_UNKNOWN and columns:
                    row = np.full(space.dim, 0.5)
                    for column in space.columns_of(name):
                        row[column] = columns.get(int(column), 0.5)
                    how["learned_value"] = _json_safe(space.decode(row)[name])

    def _log_summary_once(self) -> None:
        if self._summary_logged:
            return
        self._summary_logged = True
        used = ", ".join(
            f"{u['study_name']} ({u['n_trials_used']})" for u in self._summary["used"]
        )
        _logger.info(
            "MetaBOSampler priors used: %s; skipped: %d.",
            used or "none",
            len(self._summary["skipped"]),
        )


def _parameter_values(argument: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
        raise TypeError(f"{argument} must map parameter names to values, not {values!r}.")
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{argument}[{name!r}] must be finite, not {value!r}.")
    return dict(values)


def _validate_arguments(
    rank: int, output_transform: str, max_prior_trials: int, max_fit_points: int, device: str
) -> None:
    if rank < 1:
        raise ValueError(f"rank must be at least 1, not {rank}.")
    if output_transform not in TRANSFORMS:
        raise ValueError(
            f"output_transform must be one of {TRANSFORMS}, not {output_transform!r}."
        )
    if max_prior_trials < 1 or max_fit_points < 2:
        raise ValueError("max_prior_trials must be >= 1 and max_fit_points >= 2.")
    if not device.startswith(("cpu", "cuda", "mps")):
        raise ValueError(f"device must be 'cpu' or 'cuda' (optionally 'cuda:N'), not {device!r}.")


def _check_objectives(study: Study) -> None:
    if len(study.directions) > MAX_OBJECTIVES:
        raise ValueError(
            f"MetaBOSampler supports up to {MAX_OBJECTIVES} objectives; this study has "
            f"{len(study.directions)}. Use optuna.samplers.TPESampler or NSGAIIISampler for "
            "many-objective optimization."
        )


def _prediction_attrs(study: Study, proposal: Proposal) -> dict[str, Any]:
    """The predicted mean and standard deviation in the study's units; with several
    objectives one pair per objective, keyed by metric name (else position)."""
    signs = objective_signs(study)
    if proposal.objective_means is None or len(signs) == 1:
        return {
            USER_ATTR_PREDICTED_MEAN: float(signs[0] * proposal.mean),
            USER_ATTR_PREDICTED_STD: proposal.std,
        }
    names = metric_names(study) or [str(i) for i in range(len(signs))]
    attrs: dict[str, Any] = {}
    for i, name in enumerate(names):
        attrs[f"{USER_ATTR_PREDICTED_MEAN}:{name}"] = float(signs[i] * proposal.objective_means[i])
        attrs[f"{USER_ATTR_PREDICTED_STD}:{name}"] = proposal.objective_stds[i]  # type: ignore[index]
    return attrs


def _unfinished_counts(prior: EncodedPrior) -> dict[str, int]:
    """How many pruned and failed trials of a prior the model is given."""
    failed = prior.unfinished.failed if prior.unfinished is not None else np.zeros(0, bool)
    return {"n_pruned_used": int((~failed).sum()), "n_failed_used": int(failed.sum())}


def _closest_prior_params(priors: list[EncodedPrior], x: np.ndarray) -> dict[str, Any]:
    """The parameters of the prior configuration that ``x`` ``(d,)`` re-uses (the closest on
    the columns the prior has), or nothing if no prior has one."""
    best: tuple[float, dict[str, Any]] = (math.inf, {})
    for prior in priors:
        distance = np.nanmax(np.abs(prior.x - x[None, :]), axis=1, initial=0.0)  # (n,)
        i = int(np.argmin(distance))
        if distance[i] < best[0]:
            best = (float(distance[i]), prior.params[i])
    return best[1]


def _prior_params_at(
    priors: list[EncodedPrior], space: SearchSpace, x: np.ndarray
) -> dict[str, Any]:
    """The parameters outside ``space`` of the prior configuration that ``x`` re-uses."""
    params = _closest_prior_params(priors, x)
    return {k: v for k, v in params.items() if k not in space.distributions}


def _best_prior_params_alike(
    priors: list[EncodedPrior], space: SearchSpace, x: np.ndarray
) -> dict[str, Any]:
    """The parameters outside ``space`` of the best prior configuration that makes the same
    categorical choices as ``x`` ``(d,)`` (each prior's best such one, the closest to ``x`` of
    those): where the model picks a branch that no target trial has taken, its parameters come
    from the priors that ran it, not from the independent sampler."""
    choices = np.concatenate([np.zeros(0, dtype=np.int64), *space.categorical_columns()])
    best: tuple[float, dict[str, Any]] = (math.inf, {})
    for prior in priors:
        same = np.all(np.nan_to_num(prior.x[:, choices], nan=-1.0) == x[choices], axis=1)
        if not same.any():
            continue
        i = int(np.flatnonzero(same)[np.argmin(prior.y[same])])
        distance = float(np.nanmax(np.abs(prior.x[i] - x), initial=0.0))
        if distance < best[0]:
            best = (distance, prior.params[i])
    return {k: v for k, v in best[1].items() if k not in space.distributions}


def _exact_prior_values(
    priors: list[EncodedPrior], space: SearchSpace, x: np.ndarray, params: dict[str, Any]
) -> dict[str, Any]:
    """``params`` decoded from ``x`` with the re-used prior configuration's own values where
    they encode to the same point: a prior-design trial re-runs the prior's values exactly,
    not their round trip through the normalized space (which moves a float's last digits)."""
    prior = _closest_prior_params(priors, x)
    exact = {
        name: prior[name]
        if name in prior and _contains(space.distributions[name], prior[name])
        else value
        for name, value in params.items()
    }
    before = space.encode({**space.fixed_values, **params})
    after = space.encode({**space.fixed_values, **exact})
    if (
        before is None
        or after is None
        or not np.allclose(before, after, atol=1e-9, equal_nan=True)
    ):
        return params
    return exact


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
