from __future__ import annotations

from collections.abc import Callable
import math
from typing import Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import BasicSamplerTestCase
from optuna.testing.pytest_samplers import MultiObjectiveSamplerTestCase
from optuna.testing.pytest_samplers import RelativeSamplerTestCase
import pytest

from optuna_metabo import MetaBOSampler
from optuna_metabo import USER_ATTR_ACQUISITION
from optuna_metabo import USER_ATTR_PREDICTED_MEAN
from optuna_metabo import USER_ATTR_PREDICTED_STD
from optuna_metabo import USER_ATTR_SOURCE


optuna.logging.set_verbosity(optuna.logging.WARNING)


class TestMetaBOSamplerContract(
    BasicSamplerTestCase, RelativeSamplerTestCase, MultiObjectiveSamplerTestCase
):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: MetaBOSampler(seed=0, warn_independent_sampling=False)


def _quadratic(shift: float, scale: float = 1.0) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -2.0, 2.0)
        y = trial.suggest_float("y", -2.0, 2.0)
        n = trial.suggest_int("n", 0, 4)
        return scale * ((x - shift) ** 2 + (y + shift) ** 2 + 0.1 * (n - 2) ** 2)

    return objective


def _priors(shifts: list[float], n_trials: int = 25) -> optuna.storages.BaseStorage:
    storage = optuna.storages.InMemoryStorage()
    for i, shift in enumerate(shifts):
        study = optuna.create_study(
            storage=storage,
            study_name=f"prior-{i}",
            sampler=optuna.samplers.RandomSampler(seed=i),
        )
        study.optimize(_quadratic(shift, scale=1.0 + i), n_trials=n_trials)
    return storage


def test_first_trial_already_uses_the_priors() -> None:
    storage = _priors([0.5, 0.6])
    sampler = MetaBOSampler(prior_storage=storage, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic(0.55), n_trials=1)
    trial = study.trials[0]
    assert trial.user_attrs[USER_ATTR_SOURCE] == "prior_design"
    # The first point is one of the three best configurations of a prior, not a random one.
    candidates = [
        t.params
        for i in range(2)
        for t in sorted(
            optuna.load_study(study_name=f"prior-{i}", storage=storage).trials,
            key=lambda t: t.value,
        )[:3]
    ]
    assert any(
        all(math.isclose(trial.params[k], c[k], abs_tol=1e-7) for k in c) for c in candidates
    )
    # And it is better than most of what the priors tried on their own tasks.
    prior_values = [
        t.value for t in optuna.load_study(study_name="prior-0", storage=storage).trials
    ]
    assert trial.value < np.quantile(prior_values, 0.25)


def test_user_attrs_and_prior_summary() -> None:
    storage = _priors([0.5, -0.5])
    sampler = MetaBOSampler(prior_storage=storage, seed=0, n_prior_design_trials=1)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic(0.5), n_trials=3)
    last = study.trials[-1]
    assert last.user_attrs[USER_ATTR_SOURCE] == "model"
    assert last.user_attrs[USER_ATTR_PREDICTED_STD] > 0
    assert math.isfinite(last.user_attrs[USER_ATTR_PREDICTED_MEAN])
    assert math.isfinite(last.user_attrs[USER_ATTR_ACQUISITION])
    summary = sampler.prior_summary()
    assert [u["study_name"] for u in summary["used"]] == ["prior-0", "prior-1"]
    assert all(u["n_trials_used"] == 25 for u in summary["used"])
    similarity = summary["task_similarity"]
    assert set(similarity) == {"prior-0", "prior-1"}
    assert all(-1.0 <= v <= 1.0 for v in similarity.values())


def test_same_seed_gives_same_suggestions() -> None:
    storage = _priors([0.3])

    def params(seed: int) -> list[dict]:
        study = optuna.create_study(sampler=MetaBOSampler(prior_storage=storage, seed=seed))
        study.optimize(_quadratic(0.2), n_trials=5)
        return [t.params for t in study.trials]

    assert params(3) == params(3)


def test_without_priors_it_is_a_plain_gp_sampler() -> None:
    sampler = MetaBOSampler(seed=0, n_startup_trials=3)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic(0.0), n_trials=8)
    sources = [t.user_attrs[USER_ATTR_SOURCE] for t in study.trials]
    # Trial 0 defines the search space, so the independent sampler draws it.
    assert sources[:3] == ["independent", "startup", "startup"]
    assert set(sources[3:]) == {"model"}
    assert study.best_value < 1.0


def test_an_evaluated_configuration_is_not_proposed_again() -> None:
    # A deterministic objective on a 3 x 3 grid: the model must try every configuration once
    # before it repeats one (log EI alone would keep re-proposing the incumbent).
    sampler = MetaBOSampler(seed=0, n_startup_trials=2)
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        a = trial.suggest_int("a", 0, 2)
        b = trial.suggest_int("b", 0, 2)
        return (a - 1) ** 2 + (b - 2) ** 2

    study.optimize(objective, n_trials=9)
    model_trials = [t for t in study.trials if t.user_attrs[USER_ATTR_SOURCE] == "model"]
    earlier = {(t.params["a"], t.params["b"]) for t in study.trials if t.number < 2}
    configurations = [(t.params["a"], t.params["b"]) for t in model_trials]
    assert len(model_trials) >= 6
    assert len(set(configurations)) == len(configurations)
    assert not earlier & set(configurations)


@pytest.mark.slow
def test_transfer_beats_no_transfer_after_five_trials() -> None:
    regrets: dict[str, list[float]] = {"transfer": [], "plain": []}
    for seed in range(3):
        rng = np.random.RandomState(seed)
        shifts = list(rng.uniform(0.8, 1.2, size=3))
        storage = _priors(shifts, n_trials=30)
        target = _quadratic(float(np.mean(shifts)))
        for label, sampler in {
            "transfer": MetaBOSampler(prior_storage=storage, seed=seed),
            "plain": MetaBOSampler(seed=seed, n_startup_trials=3),
        }.items():
            study = optuna.create_study(sampler=sampler)
            study.optimize(target, n_trials=5)
            regrets[label].append(study.best_value)
    assert np.mean(regrets["transfer"]) < 0.25 * np.mean(regrets["plain"])


def test_cold_start_survives_priors_with_other_distributions() -> None:
    storage = optuna.storages.InMemoryStorage()
    prior = optuna.create_study(storage=storage, study_name="prior")
    prior.optimize(
        lambda t: t.suggest_float("lr", 1e-4, 1e-1) + len(t.suggest_categorical("c", ["a", "b"])),
        n_trials=10,
    )
    sampler = MetaBOSampler(prior_storage=storage, seed=0)
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        # Log flag and categorical choices differ from the prior's: the first trial must not
        # fail, and every value must lie inside the target's own distributions.
        lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
        c = trial.suggest_categorical("c", ["b", "z"])
        return lr + (c == "z")

    study.optimize(objective, n_trials=3)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # Once the target defines its space, the prior is re-normalized into it: log flags may
    # differ, and only trials whose choice exists in the target ("b") are kept.
    used = sampler.prior_summary()["used"]
    n_b = sum(t.params["c"] == "b" for t in prior.trials)
    assert [u["study_name"] for u in used] == ["prior"] and used[0]["n_trials_used"] == n_b


def test_sampler_pickles_and_keeps_working() -> None:
    import pickle

    storage = _priors([0.4])
    sampler = MetaBOSampler(prior_storage=storage, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic(0.4), n_trials=2)
    clone = pickle.loads(pickle.dumps(sampler))
    again = optuna.create_study(sampler=clone)
    again.optimize(_quadratic(0.4), n_trials=2)
    assert [t.state for t in again.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert clone.prior_summary()["used"] == sampler.prior_summary()["used"]


def test_a_point_another_running_trial_took_meanwhile_is_proposed_again() -> None:
    sampler = MetaBOSampler(seed=0, n_startup_trials=2)
    study = optuna.create_study(sampler=sampler)
    for x in (0.1, 0.5, 0.9):
        study.enqueue_trial({"x": x})
    study.optimize(lambda t: (t.suggest_float("x", 0.0, 1.0) - 0.3) ** 2, n_trials=3)
    # Another worker's trial, running, whose sampler has not stored its point yet.
    other = study._storage.get_trial(study._storage.create_new_trial(study._study_id))
    first_choices: list[dict] = []
    record = sampler._record

    def record_and_collide(*args: Any) -> None:
        record(*args)
        if not first_choices:
            first_choices.append(args[-1])
            # Another worker shares the very same point at the same moment.
            MetaBOSampler._share_point(study, other, args[-1])

    sampler._record = record_and_collide  # type: ignore[method-assign]
    x = study.ask().suggest_float("x", 0.0, 1.0)
    assert len(first_choices) == 1
    assert x != first_choices[0]["x"]


def test_predicted_mean_is_in_the_objective_units_and_direction_once_the_target_has_data() -> None:
    storage = _priors([0.5, 0.6])  # prior values between 0 and about 20
    sampler = MetaBOSampler(prior_storage=storage, seed=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")

    def objective(trial: optuna.Trial) -> float:  # maximized, and on another scale
        return 1000.0 - 50.0 * _quadratic(0.55)(trial)

    study.optimize(objective, n_trials=12)
    # Before the target has two results its units are unknown: no prediction is recorded.
    assert all(USER_ATTR_PREDICTED_MEAN not in t.user_attrs for t in study.trials[:2])
    assert all(USER_ATTR_PREDICTED_STD not in t.user_attrs for t in study.trials[:2])
    values = np.array([t.value for t in study.trials])
    errors = [abs(t.user_attrs[USER_ATTR_PREDICTED_MEAN] - t.value) for t in study.trials[6:]]
    # Later ones predict the maximized objective in its own units: close to what it returned.
    assert np.median(errors) < 0.1 * np.ptp(values)


def test_prior_design_trials_rerun_the_prior_values_exactly() -> None:
    storage = _priors([0.5, 0.6])
    sampler = MetaBOSampler(prior_storage=storage, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic(0.55), n_trials=3)
    prior_configs = [
        t.params
        for name in ("prior-0", "prior-1")
        for t in optuna.load_study(study_name=name, storage=storage).trials
    ]
    for trial in study.trials:
        assert trial.user_attrs[USER_ATTR_SOURCE] == "prior_design"
        # Bit for bit: no round trip through the normalized space.
        assert trial.params in prior_configs, trial.params
