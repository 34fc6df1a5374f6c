"""Sampler registry and a timing wrapper that measures seconds spent inside the sampler.

Each entry builds a seeded sampler for one run. Entries that need prior studies receive a
:class:`PriorContext` (study names plus their storage). Entries whose backend cannot be loaded
(MetaBOSampler before the core exists, OptunaHub's ``meta_learn_tpe`` offline) report a reason
from :meth:`SamplerSpec.unavailable` and are skipped by the runner with that message.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
import time
from typing import Any
from typing import cast

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState


SECONDS_ATTR = "bench:sampler_seconds"
WARM_START_TOP = 10


@dataclass
class PriorContext:
    """Prior studies of one run.

    Args:
        names: Names of the prior studies in ``storage``.
        storage: Storage URL or object holding the prior studies.
        direction: Optimization direction shared by priors and target.
        prior_defaults: Values at which the priors held parameters that the target tunes.
        fixed_params: Values at which the target holds parameters that the priors tuned.
        held_midpoints: The middle of the target's range for each held parameter.
    """

    names: list[str]
    storage: str | BaseStorage
    direction: str = "minimize"
    prior_defaults: dict[str, Any] = field(default_factory=dict)
    fixed_params: dict[str, Any] = field(default_factory=dict)
    held_midpoints: dict[str, Any] = field(default_factory=dict)

    def studies(self) -> list[optuna.Study]:
        """Load the prior studies."""
        return [optuna.load_study(study_name=n, storage=self.storage) for n in self.names]


@dataclass
class SamplerSpec:
    """How to build one benchmarked sampler.

    Args:
        factory: ``factory(seed, priors)`` returns the sampler.
        setup: Optional ``setup(study, priors)`` run before optimization (e.g. enqueueing).
        check: Optional callable returning a reason string when the sampler is unavailable.
        uses_priors: Whether the sampler sees the prior studies.
        description: One line for the report.
    """

    factory: Callable[[int, PriorContext], BaseSampler]
    setup: Callable[[optuna.Study, PriorContext], None] | None = None
    check: Callable[[], str | None] | None = None
    uses_priors: bool = False
    description: str = ""
    _reason: list[str | None] = field(default_factory=list, repr=False)

    def unavailable(self) -> str | None:
        """Return why the sampler cannot be built here, or ``None`` when it can."""
        if not self._reason:
            self._reason.append(self.check() if self.check else None)
        return self._reason[0]


class TimedSampler(BaseSampler):
    """Delegate to ``inner`` and store the seconds spent in it per trial.

    The total time of ``before_trial``, ``infer_relative_search_space``, ``sample_relative``,
    ``sample_independent`` and ``after_trial`` is written to the trial user attribute
    ``bench:sampler_seconds``.

    Args:
        inner: The sampler under test.
    """

    def __init__(self, inner: BaseSampler) -> None:
        self.inner = inner
        self._seconds: dict[int, float] = defaultdict(float)

    def __str__(self) -> str:
        return f"Timed({self.inner})"

    def _timed(self, number: int, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._seconds[number] += time.perf_counter() - start

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Delegate and time."""
        self._timed(trial.number, self.inner.before_trial, study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """Delegate and time."""
        return self._timed(trial.number, self.inner.infer_relative_search_space, study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        """Delegate and time."""
        return self._timed(trial.number, self.inner.sample_relative, study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """Delegate and time."""
        return self._timed(
            trial.number,
            self.inner.sample_independent,
            study,
            trial,
            param_name,
            param_distribution,
        )

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Delegate, time, and store the trial's total sampler seconds."""
        self._timed(trial.number, self.inner.after_trial, study, trial, state, values)
        seconds = self._seconds.pop(trial.number, 0.0)
        study._storage.set_trial_user_attr(trial._trial_id, SECONDS_ATTR, seconds)

    def reseed_rng(self) -> None:
        """Delegate."""
        self.inner.reseed_rng()


def _value(trial: FrozenTrial) -> float:
    return float(cast(float, trial.value))


def _enqueue_best_of_priors(study: optuna.Study, priors: PriorContext) -> None:
    """Enqueue the best configuration of each of the best ``WARM_START_TOP`` prior studies.

    Parameters the priors lack are then sampled by the sampler; prior parameters the target
    does not suggest are ignored by Optuna.
    """
    maximize = priors.direction == "maximize"
    bests = []
    for prior in priors.studies():
        done = [t for t in prior.trials if t.state == TrialState.COMPLETE]
        if done:
            bests.append(sorted(done, key=_value, reverse=maximize)[0])
    bests.sort(key=_value, reverse=maximize)
    for best in bests[:WARM_START_TOP]:
        study.enqueue_trial(best.params, skip_if_exists=True)


def _metabo_check() -> str | None:
    try:
        from optuna_metabo import MetaBOSampler  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the state of the core package
        return f"optuna_metabo.MetaBOSampler cannot be imported ({type(exc).__name__}: {exc})"
    return None


def _metabo(**kwargs: Any) -> Callable[[int, PriorContext], BaseSampler]:
    def factory(seed: int, priors: PriorContext) -> BaseSampler:
        from optuna_metabo import MetaBOSampler

        return MetaBOSampler(priors.names, prior_storage=priors.storage, seed=seed, **kwargs)

    return factory


def _metabo_told(
    what: Callable[[PriorContext], dict[str, Any]],
) -> Callable[[int, PriorContext], BaseSampler]:
    """MetaBOSampler with keyword arguments taken from the run's prior context."""

    def factory(seed: int, priors: PriorContext) -> BaseSampler:
        from optuna_metabo import MetaBOSampler

        kwargs: dict[str, Any] = {k: v or None for k, v in what(priors).items()}
        return MetaBOSampler(priors.names, prior_storage=priors.storage, seed=seed, **kwargs)

    return factory


def _metabo_engine(**settings: Any) -> Callable[[int, PriorContext], BaseSampler]:
    """MetaBOSampler with knobs of its numeric core (``optuna_metabo.EngineSettings``): for
    variants measured against the default."""

    def factory(seed: int, priors: PriorContext) -> BaseSampler:
        from optuna_metabo import EngineSettings
        from optuna_metabo import MetaBOSampler

        return MetaBOSampler(
            priors.names,
            prior_storage=priors.storage,
            seed=seed,
            engine_settings=EngineSettings(**settings),
        )

    return factory


_metabo_informed = _metabo_told(
    lambda p: {"prior_defaults": p.prior_defaults, "fixed_params": p.fixed_params}
)
_metabo_midpoint = _metabo_told(lambda p: {"prior_defaults": p.held_midpoints})


def _metabo_no_prior(seed: int, priors: PriorContext) -> BaseSampler:
    from optuna_metabo import MetaBOSampler

    return MetaBOSampler(None, seed=seed)


META_LEARN_TPE = "samplers/meta_learn_tpe"


def _hub_check() -> str | None:
    try:
        import optunahub

        optunahub.load_module(META_LEARN_TPE)
    except Exception as exc:
        return f"OptunaHub {META_LEARN_TPE} could not be loaded ({type(exc).__name__}: {exc})"
    return None


def _meta_learn_tpe(seed: int, priors: PriorContext) -> BaseSampler:
    import optunahub

    module = optunahub.load_module(META_LEARN_TPE)
    cls = getattr(module, "MetaLearnTPESampler", None) or module.MetaLearningTPESampler
    return cls(source_studies=priors.studies(), seed=seed)


# Knobs of MetaBOSampler's numeric core measured for issue 25 (EngineSettings fields).
DESIGN_VARIANTS: dict[str, dict[str, Any]] = {
    "top3": {"n_candidates_per_prior": 3},  # the design candidates of 0.3
    "no_mislead": {"mislead_log_odds": None},  # no ranking test: the guard alone, as in 0.3
    "mislead1": {"mislead_log_odds": 1.0},
    "branch": {"design_branches": True},
    "guard5": {"guard_start": 5},
    "indicator": {"inactive_inputs": "indicator"},
}

SAMPLERS: dict[str, SamplerSpec] = {
    "random": SamplerSpec(
        lambda seed, _p: optuna.samplers.RandomSampler(seed=seed),
        description="RandomSampler (Optuna default settings)",
    ),
    "tpe": SamplerSpec(
        lambda seed, _p: optuna.samplers.TPESampler(seed=seed),
        description="TPESampler (Optuna default settings)",
    ),
    "gp": SamplerSpec(
        lambda seed, _p: optuna.samplers.GPSampler(seed=seed),
        description="GPSampler (Optuna default settings)",
    ),
    "warm_tpe": SamplerSpec(
        lambda seed, _p: optuna.samplers.TPESampler(seed=seed),
        setup=_enqueue_best_of_priors,
        uses_priors=True,
        description=f"TPE after enqueueing the best config of the best {WARM_START_TOP} priors",
    ),
    "meta_learn_tpe": SamplerSpec(
        _meta_learn_tpe,
        check=_hub_check,
        uses_priors=True,
        description=f"OptunaHub {META_LEARN_TPE}",
    ),
    "metabo": SamplerSpec(
        _metabo(),
        check=_metabo_check,
        uses_priors=True,
        description="MetaBOSampler with default settings and the prior studies",
    ),
    "metabo_informed": SamplerSpec(
        _metabo_informed,
        check=_metabo_check,
        uses_priors=True,
        description="MetaBOSampler told the priors' held values (prior_defaults, fixed_params)",
    ),
    "metabo_copula": SamplerSpec(
        _metabo(output_transform="copula"),
        check=_metabo_check,
        uses_priors=True,
        description="MetaBOSampler with the copula output transform",
    ),
    "metabo_rank2": SamplerSpec(
        _metabo(rank=2),
        check=_metabo_check,
        uses_priors=True,
        description="MetaBOSampler with a rank-2 task covariance",
    ),
    "metabo_midpoint": SamplerSpec(
        _metabo_midpoint,
        check=_metabo_check,
        uses_priors=True,
        description="MetaBOSampler told that the priors held each missing parameter at the "
        "middle of its target range (a naive guess instead of the learned value)",
    ),
    "metabo_shared_ls": SamplerSpec(
        _metabo_engine(own_lengthscales=False, correlation_prior=False),
        check=_metabo_check,
        uses_priors=True,
        description="MetaBOSampler with the model of 0.1: the target shares the priors' "
        "lengthscales and task correlations have no prior",
    ),
    "metabo_no_corr_prior": SamplerSpec(
        _metabo_engine(correlation_prior=False),
        check=_metabo_check,
        uses_priors=True,
        description="MetaBOSampler without the Beta prior on the target's task correlations",
    ),
    **{
        f"metabo_{name}": SamplerSpec(
            _metabo_engine(**settings),
            check=_metabo_check,
            uses_priors=True,
            description=f"MetaBOSampler with {settings} (a variant measured for issue 25)",
        )
        for name, settings in DESIGN_VARIANTS.items()
    },
    "metabo_noprior": SamplerSpec(
        _metabo_no_prior,
        check=_metabo_check,
        description="MetaBOSampler without prior studies (isolates the effect of transfer)",
    ),
}
BASELINES = ("random", "tpe", "gp", "warm_tpe")
METABO = ("metabo", "metabo_noprior", "metabo_copula")
DEFAULT_SAMPLERS = (*BASELINES, "meta_learn_tpe", *METABO)


def register_sampler(name: str, spec: SamplerSpec) -> None:
    """Add or replace a registry entry (e.g. a MetaBOSampler variant).

    Args:
        name: Name used on the command line and in reports (no dashes).
        spec: How to build it.
    """
    SAMPLERS[name] = spec
