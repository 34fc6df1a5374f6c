"""Bad input and faults: each gives a clear error or a logged skip, and nothing is lost.

Covers storage problems (unreachable or unopenable prior storages, names that match nothing,
the target among its own priors), problems inside the priors (bad trial states and values,
constant values, duplicates, partial overlap and different distributions, multi-objective
priors, 50,000-trial histories), target-side problems (dynamic and conditional spaces, failing
objectives, multi-objective targets), numerical faults (non-positive-definite kernels, failing
optimizers) and property-based fuzzing of search spaces and prior histories. Whatever happens,
the sampler must never return a value outside its distribution.
"""

from __future__ import annotations

from collections.abc import Callable
import logging
import math
from pathlib import Path
import re
import sqlite3
import time
from typing import Any

from hypothesis import example
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import TrialState
import pytest

from optuna_metabo import MetaBOSampler
import optuna_metabo._core.model as model_module
import optuna_metabo._core.proposal as proposal_module


optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE: dict[str, BaseDistribution] = {
    "x": FloatDistribution(0.0, 1.0),
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "kind": CategoricalDistribution(("a", "b", "c")),
}
_KIND = {"a": 0.0, "b": 0.3, "c": 0.6}
SOURCES = {"prior_design", "model", "target_model"}


# ------------------------------------------------------------------------------- helpers
def objective(trial: optuna.Trial) -> float:
    """The target task: a float, a log float and a categorical parameter."""
    x = trial.suggest_float("x", 0.0, 1.0)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    kind = trial.suggest_categorical("kind", ("a", "b", "c"))
    return (x - 0.3) ** 2 + 0.1 * (math.log10(lr) + 2.5) ** 2 + _KIND[kind]


def prior_value(params: dict[str, Any]) -> float:
    """A related task, evaluated on any parameter dictionary of the usual names."""
    x = float(params.get("x", 0.5))
    lr = float(params.get("lr", 1e-3))
    lr = lr if lr > 0 else 1e-3
    return (
        (x - 0.35) ** 2
        + 0.1 * (math.log10(lr) + 2.4) ** 2
        + _KIND.get(str(params.get("kind")), 0.2)
    )


def random_params(
    space: dict[str, BaseDistribution], rng: np.random.RandomState
) -> dict[str, Any]:
    """A uniformly random configuration of ``space``."""
    params: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            params[name] = dist.choices[rng.randint(len(dist.choices))]
        elif isinstance(dist, IntDistribution):
            params[name] = int(
                dist.low + dist.step * rng.randint((dist.high - dist.low) // dist.step + 1)
            )
        else:
            assert isinstance(dist, FloatDistribution)
            if dist.log:
                params[name] = float(
                    math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
                )
            elif dist.step is not None:
                n = int(round((dist.high - dist.low) / dist.step))
                params[name] = float(dist.low + dist.step * rng.randint(n + 1))
            else:
                params[name] = float(rng.uniform(dist.low, dist.high))
    return params


def prior_study(
    name: str = "prior",
    n_trials: int = 12,
    space: dict[str, BaseDistribution] | None = None,
    storage: optuna.storages.BaseStorage | str | None = None,
    seed: int = 0,
) -> optuna.Study:
    """A completed prior study, filled directly in storage (no sampler involved)."""
    space = space or SPACE
    study = optuna.create_study(study_name=name, storage=storage)
    rng = np.random.RandomState(seed)
    for _ in range(n_trials):
        params = random_params(space, rng)
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=space, value=prior_value(params)
            )
        )
    return study


def inside(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is a valid value of ``dist``."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def assert_all_inside(study: optuna.Study) -> None:
    """Every parameter of every trial lies inside its distribution."""
    for trial in study.get_trials(deepcopy=False):
        for name, value in trial.params.items():
            dist = trial.distributions[name]
            assert inside(dist, value), (trial.number, name, value, dist)


def run_target(
    sampler: MetaBOSampler,
    n_trials: int = 2,
    func: Callable[[optuna.Trial], float] = objective,
) -> optuna.Study:
    """Optimizes a fresh in-memory target study and checks every value is in range."""
    study = optuna.create_study(study_name="target", sampler=sampler)
    study.optimize(func, n_trials=n_trials)
    assert_all_inside(study)
    return study


def sources(study: optuna.Study) -> list[str | None]:
    return [t.user_attrs.get("metabo:source") for t in study.trials]


def logged(caplog: pytest.LogCaptureFixture, *needles: str) -> bool:
    """Whether one log record at INFO or above contains every needle."""
    return any(
        r.levelno >= logging.INFO and all(n in r.getMessage() for n in needles)
        for r in caplog.records
    )


# ------------------------------------------------------------------------ storage problems
def test_unreachable_prior_storage_gives_clear_error_naming_the_cause() -> None:
    """A server that refuses connections: a ValueError that names the redacted URL and says
    the connection failed (not a misleading commit error); the target's trial is FAIL."""
    url = "postgresql+psycopg2://user:secret@127.0.0.1:9/nowhere"
    study = optuna.create_study(sampler=MetaBOSampler(["a"], prior_storage=url))
    with pytest.raises(ValueError, match="Cannot open prior storage") as info:
        study.optimize(objective, n_trials=1)
    message = str(info.value)
    assert "secret" not in message and "127.0.0.1:9/nowhere" in message
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert "connect" in message.lower(), f"the root cause is hidden: {message}"


@pytest.mark.parametrize("suffix", ["db", "log"])
def test_missing_prior_file_is_an_error_and_is_not_created(tmp_path: Path, suffix: str) -> None:
    """A missing SQLite or journal file: a clear error, and opening does not create it."""
    path = tmp_path / f"missing.{suffix}"
    url = f"sqlite:///{path}" if suffix == "db" else str(path)
    study = optuna.create_study(sampler=MetaBOSampler(["a"], prior_storage=url))
    with pytest.raises(ValueError, match="does not exist"):
        study.optimize(objective, n_trials=1)
    assert not path.exists()


def test_file_that_is_not_an_optuna_database_is_a_clear_error(tmp_path: Path) -> None:
    """An SQLite file of another application, and a file that is not SQLite at all."""
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE things (id INTEGER)")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database\n" * 100)
    for path in (other, garbage):
        before = path.read_bytes()
        sampler = MetaBOSampler(["a"], prior_storage=f"sqlite:///{path}")
        study = optuna.create_study(sampler=sampler)
        with pytest.raises(ValueError, match="prior storage"):
            study.optimize(objective, n_trials=1)
        assert path.read_bytes() == before


def test_name_or_glob_matching_nothing_lists_existing_studies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'priors.db'}"
    prior_study("bert-base", n_trials=3, storage=url)
    prior_study("resnet", n_trials=3, storage=url)
    for pattern in ("gpt-*", "bert"):
        study = optuna.create_study(sampler=MetaBOSampler([pattern], prior_storage=url))
        match = re.escape(f"No prior study matches '{pattern}'")
        with pytest.raises(ValueError, match=match) as info:
            study.optimize(objective, n_trials=1)
        assert "bert-base, resnet" in str(info.value)


@pytest.mark.slow
def test_target_among_its_priors_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """All studies of the storage (None), the target by name, and the target as a Study."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    prior_study("p", storage=url)
    target = optuna.create_study(study_name="t", storage=url)
    target.optimize(objective, n_trials=2)
    prior_specs: list[list[str | optuna.Study] | None] = [None, ["t", "p"], ["*"], [target, "p"]]
    for priors in prior_specs:
        sampler = MetaBOSampler(priors, prior_storage=url, seed=0)
        study = optuna.load_study(study_name="t", storage=url, sampler=sampler)
        study.optimize(objective, n_trials=1)
        summary = sampler.prior_summary()
        assert [u["study_name"] for u in summary["used"]] == ["p"]
        assert {"study_name": "t", "reason": "it is the target study itself"} in summary["skipped"]
    assert_all_inside(study)
    assert len(study.trials) == 6


def test_prior_with_the_target_name_in_another_storage_is_used(tmp_path: Path) -> None:
    """A study that merely shares the target's name, in another storage, is not the target."""
    old = f"sqlite:///{tmp_path / 'old.db'}"
    prior_study("resnet", storage=old)
    sampler = MetaBOSampler(["resnet"], prior_storage=old, seed=0)
    study = optuna.create_study(study_name="resnet", sampler=sampler)
    study.optimize(objective, n_trials=1)
    assert [u["study_name"] for u in sampler.prior_summary()["used"]] == ["resnet"]


# -------------------------------------------------------------------- problems in the priors
def test_failed_pruned_running_nan_and_infinite_prior_trials_are_ignored() -> None:
    prior = prior_study(n_trials=8)
    storage = prior._storage
    rng = np.random.RandomState(5)
    for state in (TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        prior.add_trial(
            optuna.trial.create_trial(
                params=random_params(SPACE, rng), distributions=SPACE, state=state
            )
        )
    for value in (math.inf, -math.inf, math.nan):
        trial_id = storage.create_new_trial(prior._study_id)
        for name, dist in SPACE.items():
            value_ = random_params(SPACE, rng)[name]
            storage.set_trial_param(trial_id, name, dist.to_internal_repr(value_), dist)
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
    sampler = MetaBOSampler([prior], seed=0)
    study = run_target(sampler, n_trials=2)
    (used,) = sampler.prior_summary()["used"]
    assert used["n_trials_usable"] == 8 and used["n_trials_total"] == 15
    assert set(sources(study)) <= SOURCES
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_constant_prior_values() -> None:
    """Zero variance in a prior: it is used, nothing divides by zero."""
    prior = optuna.create_study(study_name="flat")
    rng = np.random.RandomState(0)
    for _ in range(10):
        prior.add_trial(
            optuna.trial.create_trial(
                params=random_params(SPACE, rng), distributions=SPACE, value=1.0
            )
        )
    sampler = MetaBOSampler([prior], seed=0, n_prior_design_trials=1)
    study = run_target(sampler, n_trials=3)
    assert [u["study_name"] for u in sampler.prior_summary()["used"]] == ["flat"]
    assert sources(study) == ["prior_design", "model", "model"]
    for trial in study.trials:
        assert math.isfinite(trial.user_attrs["metabo:acquisition_value"])
    assert math.isfinite(study.trials[2].user_attrs["metabo:predicted_mean"])


def test_thousands_of_identical_and_duplicate_trials_are_merged() -> None:
    """3,000 copies of one configuration plus duplicates of a few others become one point
    per configuration, quickly."""
    prior = prior_study("dups", n_trials=5)
    params = dict(prior.trials[0].params)
    same = optuna.trial.create_trial(params=params, distributions=SPACE, value=0.5)
    prior.add_trials([same] * 3000 + [prior.trials[1]] * 3)
    sampler = MetaBOSampler([prior], seed=0)
    start = time.perf_counter()
    study = run_target(sampler, n_trials=2)
    assert time.perf_counter() - start < 60
    (used,) = sampler.prior_summary()["used"]
    assert used["n_trials_usable"] == 5 and used["n_trials_total"] == 3008
    assert set(sources(study)) <= SOURCES


# Prior variants: (id, prior space, expected "used" or the start of the skip reason).
_VARIANTS: list[tuple[str, dict[str, BaseDistribution], str]] = [
    ("extra-param", {**SPACE, "extra": FloatDistribution(0, 1)}, "used"),
    ("wider-bounds", {**SPACE, "x": FloatDistribution(-5.0, 5.0)}, "used"),
    ("no-log-flag", {**SPACE, "lr": FloatDistribution(1e-4, 1e-1)}, "used"),
    ("float-step", {**SPACE, "x": FloatDistribution(0.0, 1.0, step=0.1)}, "used"),
    ("int-instead-of-float", {**SPACE, "x": IntDistribution(0, 1)}, "used"),
    ("other-choices", {**SPACE, "kind": CategoricalDistribution(("a", "b", "d"))}, "used"),
    ("missing-param", {k: v for k, v in SPACE.items() if k != "kind"}, "used"),
    ("numeric-for-categorical", {**SPACE, "kind": FloatDistribution(0, 1)}, "used"),
    ("shares-too-little", {"x": SPACE["x"]}, "it shares only 1 of the target's 3"),
    ("all-out-of-range", {**SPACE, "x": FloatDistribution(10.0, 20.0)}, "none of its trials"),
]


@pytest.mark.parametrize(
    ("variant", "prior_space", "expected"), _VARIANTS, ids=[v[0] for v in _VARIANTS]
)
def test_priors_with_other_parameters_or_distributions(
    variant: str,
    prior_space: dict[str, BaseDistribution],
    expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Priors that partly overlap the target, or use other bounds, log flags, steps or choices,
    are used where they can be matched; otherwise skipped, and the skip is logged."""
    prior = prior_study(variant, n_trials=12, space=prior_space)
    sampler = MetaBOSampler([prior], seed=0, n_startup_trials=1)
    with caplog.at_level(logging.INFO):
        study = run_target(sampler, n_trials=2)
    summary = sampler.prior_summary()
    if expected == "used":
        assert [u["study_name"] for u in summary["used"]] == [variant]
        assert set(sources(study)) <= SOURCES
    else:
        (skipped,) = summary["skipped"]
        assert skipped["study_name"] == variant and skipped["reason"].startswith(expected)
        assert logged(caplog, variant, expected), "the skip and its reason are not logged"


def _memory_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


@pytest.mark.slow
def test_huge_prior_history_is_subsampled_with_bounded_time_and_memory(
    record_property: Callable[[str, Any], None],
) -> None:
    """50,000 prior trials: the GP sees at most max_prior_trials of them; the first suggestion
    and the memory it needs stay bounded (figures are recorded as test properties)."""
    rng = np.random.RandomState(0)
    trials = []
    for _ in range(50_000):
        params = random_params(SPACE, rng)
        trials.append(
            optuna.trial.create_trial(
                params=params, distributions=SPACE, value=prior_value(params)
            )
        )
    prior = optuna.create_study(study_name="huge")
    prior.add_trials(trials)
    del trials
    with open("/proc/self/clear_refs", "w") as refs:  # Resets the peak RSS (VmHWM) to now.
        refs.write("5")
    rss_before = _memory_kib("VmRSS")
    sampler = MetaBOSampler([prior], seed=0, max_prior_trials=500)
    study = optuna.create_study(sampler=sampler)
    start = time.perf_counter()
    study.optimize(objective, n_trials=1)
    first = time.perf_counter() - start
    start = time.perf_counter()
    study.optimize(objective, n_trials=1)
    second = time.perf_counter() - start
    peak_mib = (_memory_kib("VmHWM") - rss_before) / 1024
    record_property("first_suggestion_s", round(first, 2))
    record_property("second_suggestion_s", round(second, 2))
    record_property("peak_rss_increase_mib", round(peak_mib, 1))
    print(f"50k priors: first {first:.2f} s, second {second:.2f} s, +{peak_mib:.0f} MiB peak")
    (used,) = sampler.prior_summary()["used"]
    assert used["n_trials_used"] == 500 and used["n_trials_usable"] == 50_000
    assert first < 90 and second < 30
    assert peak_mib < 400
    assert_all_inside(study)


# --------------------------------------------------------------------- target-side problems
def test_conditional_search_space_in_the_target() -> None:
    """Branch-dependent parameters: each goes to the independent sampler once, on the first
    trial that takes its branch, and to the GP once a completed trial has used it; the shared
    parameters never do. Every trial has exactly the parameters of its branch."""
    independent: list[tuple[int, str]] = []

    class Recording(optuna.samplers.RandomSampler):
        def sample_independent(
            self, study: optuna.Study, trial: Any, name: str, dist: BaseDistribution
        ) -> Any:
            independent.append((trial.number, name))
            return super().sample_independent(study, trial, name, dist)

    def conditional(trial: optuna.Trial) -> float:
        kind = trial.suggest_categorical("kind", ("a", "b", "c"))
        x = trial.suggest_float("x", 0.0, 1.0)
        if kind == "a":
            return x + trial.suggest_float("alpha", 1e-3, 1.0, log=True)
        if kind == "b":
            return x + trial.suggest_int("depth", 1, 8)
        return x

    sampler = MetaBOSampler(
        [prior_study()],
        seed=0,
        independent_sampler=Recording(seed=0),
        warn_independent_sampling=False,
    )
    study = run_target(sampler, n_trials=8, func=conditional)
    branch = {"a": {"alpha"}, "b": {"depth"}, "c": set()}
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        assert set(trial.params) == {"kind", "x"} | branch[trial.params["kind"]]
    first_use = {}
    for trial in study.trials:
        for name in set(trial.params) - set(first_use):
            first_use[name] = trial.number
    branch_params = {n: first_use[n] for n in ("alpha", "depth") if n in first_use}
    assert branch_params, "no trial took a branch with its own parameter"
    assert sorted(independent) == sorted((number, n) for n, number in branch_params.items())
    assert set(sources(study)) <= SOURCES


def test_dynamic_search_space_in_the_target() -> None:
    """Bounds and parameters that change from trial to trial."""

    def dynamic(trial: optuna.Trial) -> float:
        high = 1.0 + trial.number % 3
        x = trial.suggest_float("x", 0.0, high)
        value = x
        for i in range(trial.number % 2 + 1):
            value += trial.suggest_int(f"n{i}", 0, 3 + trial.number)
        return value

    sampler = MetaBOSampler(seed=0, n_startup_trials=2, warn_independent_sampling=False)
    study = run_target(sampler, n_trials=6, func=dynamic)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_objective_that_raises() -> None:
    """A failing trial is recorded as FAIL and ignored; the study continues."""

    def flaky(trial: optuna.Trial) -> float:
        value = objective(trial)
        if trial.number in (1, 3):
            raise RuntimeError("simulated crash in user code")
        return value

    study = optuna.create_study(sampler=MetaBOSampler([prior_study()], seed=0))
    study.optimize(flaky, n_trials=3, catch=(RuntimeError,))
    with pytest.raises(RuntimeError, match="simulated"):
        study.optimize(flaky, n_trials=1)  # Not caught: the error reaches the caller.
    study.optimize(flaky, n_trials=1)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE] + [
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert set(sources(study)) <= SOURCES
    assert_all_inside(study)


def test_startup_trials_do_not_warn_about_independent_sampling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Random startup trials (no priors) are by design, not a fallback: no warning that the
    parameters are "outside the relative search space" should be logged for them."""
    sampler = MetaBOSampler(seed=0, n_startup_trials=4)
    with caplog.at_level(logging.WARNING):
        study = run_target(sampler, n_trials=3)
    assert sources(study)[1:] == ["startup"] * 2
    assert not logged(caplog, "outside the relative search space")


def test_more_than_four_objectives_raise_naming_the_limitation() -> None:
    study = optuna.create_study(directions=["minimize"] * 5, sampler=MetaBOSampler())
    with pytest.raises(ValueError, match="up to 4 objectives"):
        study.optimize(lambda t: (objective(t),) * 5, n_trials=1)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


# ------------------------------------------------------------------------ numerical faults
def _trained_sampler(**kwargs: Any) -> tuple[MetaBOSampler, optuna.Study]:
    sampler = MetaBOSampler([prior_study()], seed=0, **kwargs)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=2)
    return sampler, study


def test_not_positive_definite_kernel_is_retried_with_jitter(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first Cholesky attempt sees a matrix that is far from positive definite; larger
    jitter then succeeds, and the model (not the fallback) proposes the point."""
    monkeypatch.setattr(model_module, "_JITTERS", (-1e6, 0.0, 1e-8, 1e-6, 1e-4, 1e-2))
    with caplog.at_level(logging.WARNING):
        _, study = _trained_sampler()
        study.optimize(objective, n_trials=2)
    assert set(sources(study)) <= SOURCES
    assert not logged(caplog, "falling back")
    assert_all_inside(study)


def test_kernel_never_positive_definite_falls_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    real = torch.linalg.cholesky_ex

    def never_pd(matrix: Any, **kwargs: Any) -> Any:
        factor, info = real(matrix, **kwargs)
        return factor, torch.ones_like(info)

    _, study = _trained_sampler()
    monkeypatch.setattr(model_module.torch.linalg, "cholesky_ex", never_pd)
    with caplog.at_level(logging.WARNING):
        study.optimize(objective, n_trials=2)
    assert sources(study)[-2:] == ["fallback", "fallback"]
    assert logged(caplog, "could not fit or optimize the GP", "falling back")
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert_all_inside(study)


@pytest.mark.parametrize(
    ("module", "attribute", "error"),
    [
        (model_module, "_optimize_hyperparameters", model_module.ModelFitError("diverged")),
        (proposal_module, "optimize_acquisition", RuntimeError("L-BFGS-B failed")),
        (proposal_module, "best_candidate", ValueError("no finite acquisition value")),
        (proposal_module, "fit_icm_gp", FloatingPointError("overflow")),
    ],
    ids=["hyperparameter-fit", "acquisition-optimizer", "candidate-ranking", "overflow"],
)
def test_optimizer_failures_fall_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    module: Any,
    attribute: str,
    error: Exception,
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    sampler = MetaBOSampler([prior_study()], seed=0, n_prior_design_trials=1)
    study = optuna.create_study(sampler=sampler)
    monkeypatch.setattr(module, attribute, fail)
    with caplog.at_level(logging.WARNING):
        study.optimize(objective, n_trials=3)
    assert "fallback" in sources(study)
    assert logged(caplog, "falling back")
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert_all_inside(study)


def test_nan_acquisition_values_still_give_a_valid_point(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def nan_acquisition(self: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.full(x.shape[:1], math.nan, dtype=x.dtype) + 0.0 * x.sum()

    sampler, study = _trained_sampler(n_prior_design_trials=1)
    monkeypatch.setattr(proposal_module.LogExpectedImprovement, "__call__", nan_acquisition)
    study.optimize(objective, n_trials=2)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert_all_inside(study)


# -------------------------------------------------------------------------------- fuzzing
def _distributions() -> st.SearchStrategy[BaseDistribution]:
    def floats(bounds: tuple[float, float], log: bool, stepped: bool) -> BaseDistribution:
        low, high = sorted(bounds)
        if log:
            return FloatDistribution(max(low, 1e-6) + 1e-6, max(high, 1e-6) + 2.0, log=True)
        if stepped:  # Binary fractions, so that the range is an exact multiple of the step.
            step = 2.0 ** round(math.log2(max((high - low) / 4, 1e-3)))
            return FloatDistribution(round(low), round(low) + 4 * step, step=step)
        return FloatDistribution(low, high + 1e-3)

    def ints(low: int, span: int, log: bool, step: int) -> BaseDistribution:
        if log:
            return IntDistribution(max(low, 1), max(low, 1) + span, log=True)
        return IntDistribution(low, low + span * step, step=step)

    value = st.floats(-100, 100, allow_nan=False)
    return st.one_of(
        st.builds(floats, st.tuples(value, value), st.booleans(), st.booleans()),
        st.builds(ints, st.integers(-5, 5), st.integers(0, 6), st.booleans(), st.integers(1, 3)),
        st.builds(
            lambda c: CategoricalDistribution(tuple(c)),
            st.lists(
                st.one_of(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 3), st.none()),
                min_size=1,
                max_size=4,
                unique_by=lambda v: (type(v).__name__, v),
            ),
        ),
    )


_spaces = st.dictionaries(
    st.sampled_from(["p", "q", "r", "s"]), _distributions(), min_size=1, max_size=3
)
_STATES = [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING]
_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0.0, 1.0, math.inf, -math.inf, math.nan]),
)


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,  # The same examples on every CI run.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(  # Regression seed: a prior whose parameter has another kind, before any target trial.
    target_space={"p": FloatDistribution(0.0, 1.0)},
    prior_space={"p": CategoricalDistribution(("a", "b"))},
    shared=[False] * 4,
    prior_values=[0.0, 1.0],
    prior_states=[TrialState.COMPLETE] * 12,
    target_values=[],
    seed=0,
)
@given(
    target_space=_spaces,
    prior_space=_spaces,
    shared=st.lists(st.booleans(), min_size=4, max_size=4),
    prior_values=st.lists(_values, min_size=0, max_size=12),
    prior_states=st.lists(st.sampled_from(_STATES), min_size=12, max_size=12),
    target_values=st.lists(st.floats(-10, 10, allow_nan=False), min_size=0, max_size=4),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow
def test_fuzz_random_spaces_and_prior_histories_never_break_the_sampler(
    target_space: dict[str, BaseDistribution],
    prior_space: dict[str, BaseDistribution],
    shared: list[bool],
    prior_values: list[float],
    prior_states: list[TrialState],
    target_values: list[float],
    seed: int,
) -> None:
    """Random target spaces, random prior spaces (sharing some of the target's distributions,
    others with the same names but other kinds, bounds, flags or choices) and random histories
    with any trial state and value: the sampler never raises and never leaves a distribution.
    """
    rng = np.random.RandomState(seed)
    for keep, name in zip(shared, sorted(target_space)):
        if keep:
            prior_space = {**prior_space, name: target_space[name]}
    prior = optuna.create_study(study_name="fuzz-prior")
    storage = prior._storage
    for value, state in zip(prior_values, prior_states):
        trial_id = storage.create_new_trial(prior._study_id)
        for name, value_ in random_params(prior_space, rng).items():
            dist = prior_space[name]
            storage.set_trial_param(trial_id, name, dist.to_internal_repr(value_), dist)
        if state.is_finished():
            finite = state == TrialState.COMPLETE
            storage.set_trial_state_values(trial_id, state, [value] if finite else None)
    sampler = MetaBOSampler(
        [prior], seed=seed, n_startup_trials=2, max_fit_points=40, warn_independent_sampling=False
    )
    study = optuna.create_study(sampler=sampler)
    for value in target_values:
        params = random_params(target_space, rng)
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=target_space, value=value)
        )
    for _ in range(2):
        trial = study.ask(fixed_distributions=target_space)
        for name, dist in target_space.items():
            assert inside(dist, trial.params[name]), (name, trial.params[name], dist)
        study.tell(trial, float(rng.rand()))


@pytest.mark.parametrize("with_prior", [False, True])
def test_a_rank_above_the_number_of_tasks_is_capped_not_a_fallback(with_prior: bool) -> None:
    # Without priors (one task), and in the target-only fit of the negative-transfer guard.
    priors = [prior_study()] if with_prior else None
    sampler = MetaBOSampler(priors, seed=0, rank=3, n_startup_trials=3)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=12 if with_prior else 5)
    sources = [t.user_attrs["metabo:source"] for t in study.trials]
    assert "fallback" not in sources and sources[-1] in ("model", "target_model")
