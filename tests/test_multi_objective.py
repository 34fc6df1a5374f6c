"""Multi-objective targets and constraints, end to end through ``MetaBOSampler``."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import math

import numpy as np
import optuna
from optuna.trial import TrialState
import pytest

from optuna_metabo import MetaBOSampler
from optuna_metabo._core.pareto import hypervolume
from optuna_metabo._core.pareto import nondominated_mask
from optuna_metabo._vocabulary import SOURCE_PRIOR_DESIGN
from optuna_metabo._vocabulary import USER_ATTR_FEASIBILITY
from optuna_metabo._vocabulary import USER_ATTR_SOURCE

from fixed_design import DesignSampler


optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

_REFERENCE = np.array([2.0, 2.0])


def _two_objectives(shift: float) -> Callable[[optuna.Trial], tuple[float, float]]:
    """A front along ``x`` in ``[shift, 1 - shift]``; off it, ``z`` away from 0.7 costs both."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        z = trial.suggest_float("z", 0.0, 1.0)
        penalty = 2.0 * (z - 0.7) ** 2
        return (x - shift) ** 2 + penalty, (x - 1.0 + shift) ** 2 + penalty

    return objective


def _mo_priors(
    names: Sequence[str] | None = ("a", "b"), shifts: Sequence[float] = (0.1, 0.15, 0.2)
) -> optuna.storages.BaseStorage:
    storage = optuna.storages.InMemoryStorage()
    for i, shift in enumerate(shifts):
        study = optuna.create_study(
            storage=storage,
            study_name=f"prior-{i}",
            directions=["minimize", "minimize"],
            sampler=DesignSampler(seed=i),
        )
        if names is not None:
            study.set_metric_names(list(names))
        study.optimize(_two_objectives(shift), n_trials=30)
    return storage


def _target(sampler: optuna.samplers.BaseSampler, n_trials: int) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.set_metric_names(["a", "b"])
    study.optimize(_two_objectives(0.12), n_trials=n_trials)
    return study


def _hypervolume(study: optuna.Study) -> float:
    values = np.array([t.values for t in study.trials if t.state == TrialState.COMPLETE])
    return hypervolume(values, _REFERENCE)


def test_first_trials_are_a_portfolio_of_the_priors_pareto_fronts() -> None:
    storage = _mo_priors()
    study = _target(MetaBOSampler(prior_storage=storage, seed=0), n_trials=4)
    sources = [t.user_attrs[USER_ATTR_SOURCE] for t in study.trials]
    assert sources == [SOURCE_PRIOR_DESIGN] * 4
    fronts = []
    for prior in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=prior.study_name, storage=storage).trials
        values = np.array([t.values for t in trials])
        fronts += [t.params for t, keep in zip(trials, nondominated_mask(values)) if keep]
    params = [t.params for t in study.trials]
    assert all(p in fronts for p in params)  # Re-used exactly, from the priors' fronts.
    assert len({tuple(sorted(p.items())) for p in params}) == 4  # And all different.
    summary = study.sampler.prior_summary()
    assert summary["objectives"] == ["a", "b"]
    assert [u["outputs"] for u in summary["used"]] == ["a <- a, b <- b (by name)"] * 3


def test_transfer_finds_a_larger_hypervolume_than_random_search_in_few_trials() -> None:
    storage = _mo_priors()
    transfer = [
        _hypervolume(_target(MetaBOSampler(prior_storage=storage, seed=s), 8)) for s in range(2)
    ]
    random = [_hypervolume(_target(optuna.samplers.RandomSampler(seed=s), 8)) for s in range(2)]
    assert np.mean(transfer) > np.mean(random) + 0.1


def test_model_phase_records_one_prediction_per_objective_and_avoids_repeats() -> None:
    study = _target(MetaBOSampler(prior_storage=_mo_priors(), seed=0, n_prior_design_trials=2), 6)
    last = study.trials[-1]
    assert last.user_attrs[USER_ATTR_SOURCE] in ("model", "target_model")
    for name in ("a", "b"):
        assert math.isfinite(last.user_attrs[f"metabo:predicted_mean:{name}"])
        assert last.user_attrs[f"metabo:predicted_std:{name}"] >= 0.0
    assert "metabo:predicted_mean" not in last.user_attrs
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == len(params)


def test_unmatched_priors_are_skipped_with_reasons() -> None:
    storage = _mo_priors(names=("loss", "time"))
    unnamed = optuna.create_study(storage=storage, study_name="unnamed")
    unnamed.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    study = _target(MetaBOSampler(prior_storage=storage, seed=0), n_trials=1)
    reasons = {s["study_name"]: s["reason"] for s in study.sampler.prior_summary()["skipped"]}
    assert "none of its metrics (loss, time) matches the target's (a, b)" in reasons["prior-0"]
    assert "1 objective(s) and the target 2" in reasons["unnamed"]
    assert study.trials[0].user_attrs[USER_ATTR_SOURCE] == "startup"


def test_single_objective_prior_informs_the_objective_it_names() -> None:
    storage = optuna.storages.InMemoryStorage()
    prior = optuna.create_study(storage=storage, study_name="only-a")
    prior.set_metric_names(["a"])
    prior.optimize(lambda t: _two_objectives(0.1)(t)[0], n_trials=20)
    study = _target(MetaBOSampler(prior_storage=storage, seed=0), n_trials=2)
    (used,) = study.sampler.prior_summary()["used"]
    assert used["outputs"] == "a <- a (by name)"
    assert study.trials[0].user_attrs[USER_ATTR_SOURCE] == SOURCE_PRIOR_DESIGN


def test_pending_trials_of_other_workers_are_not_proposed_again() -> None:
    sampler = MetaBOSampler(prior_storage=_mo_priors(), seed=0, n_prior_design_trials=3)
    study = _target(sampler, n_trials=5)
    first, second = study.ask(), study.ask()
    for trial in (first, second):
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("z", 0.0, 1.0)
    assert first.params != second.params


@pytest.mark.parametrize("n_objectives", [3, 4])
def test_three_and_four_objectives_run_with_named_priors(n_objectives: int) -> None:
    names = [f"f{i}" for i in range(n_objectives)]

    def objective(trial: optuna.Trial) -> list[float]:
        x = np.array([trial.suggest_float(f"x{j}", 0.0, 1.0) for j in range(3)])
        return [float(np.sum((x - i / n_objectives) ** 2)) for i in range(n_objectives)]

    storage = optuna.storages.InMemoryStorage()
    prior = optuna.create_study(storage=storage, directions=["minimize"] * n_objectives)
    prior.set_metric_names(names)
    prior.optimize(objective, n_trials=25)
    study = optuna.create_study(
        directions=["minimize"] * n_objectives,
        sampler=MetaBOSampler(prior_storage=storage, seed=0, n_prior_design_trials=2),
    )
    study.set_metric_names(names)
    study.optimize(objective, n_trials=5)
    sources = [t.user_attrs[USER_ATTR_SOURCE] for t in study.trials]
    assert sources[:2] == [SOURCE_PRIOR_DESIGN] * 2 and set(sources[2:]) <= {
        "model",
        "target_model",
    }


# ------------------------------------------------------------------------------- constraints
def _constrained(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    return -x - 0.3 * y  # Best at x = 1, which the constraint rules out.


def _limit(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [trial.params["x"] - 0.3]  # Feasible for x <= 0.3.


def test_constraint_values_are_stored_as_optuna_stores_them() -> None:
    study = optuna.create_study(sampler=MetaBOSampler(seed=0, constraints_func=_limit))
    study.optimize(_constrained, n_trials=3)
    for trial in study.trials:
        assert list(trial.system_attrs["constraints"]) == [pytest.approx(trial.params["x"] - 0.3)]


def test_bad_constraint_values_raise_clear_errors() -> None:
    nan = MetaBOSampler(seed=0, constraints_func=lambda t: [math.nan])
    study = optuna.create_study(sampler=nan)
    with pytest.raises(ValueError, match="cannot be NaN"):
        study.optimize(_constrained, n_trials=1)
    lengths = iter([[0.0], [0.0, 1.0]])
    varying = MetaBOSampler(seed=0, constraints_func=lambda t: next(lengths))
    study = optuna.create_study(sampler=varying)
    study.optimize(_constrained, n_trials=1)
    with pytest.raises(ValueError, match="returned 2 values for trial 1 but 1"):
        study.optimize(_constrained, n_trials=1)
    # The trial itself is kept, as Optuna keeps it when a constraints_func fails.
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2


def test_without_a_feasible_point_the_sampler_seeks_feasibility_first() -> None:
    def rare(trial: optuna.trial.FrozenTrial) -> list[float]:
        return [0.9 - trial.params["x"]]  # Feasible only for x >= 0.9.

    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 0.0, 1.0) + trial.suggest_float("y", 0.0, 1.0)

    study = optuna.create_study(
        sampler=MetaBOSampler(seed=1, constraints_func=rare, n_startup_trials=4)
    )
    study.optimize(objective, n_trials=12)
    feasible = [t.params["x"] >= 0.9 for t in study.trials]
    assert any(feasible[4:9])  # Found within five model trials ...
    first = feasible.index(True)
    assert sum(feasible[first:]) >= 0.6 * len(feasible[first:])  # ... and then kept.
    model_trials = [t for t in study.trials[4:] if USER_ATTR_FEASIBILITY in t.user_attrs]
    assert model_trials and all(
        0.0 <= t.user_attrs[USER_ATTR_FEASIBILITY] <= 1.0 for t in model_trials
    )


def test_constraint_values_of_prior_studies_keep_the_first_trials_feasible() -> None:
    storage = optuna.storages.InMemoryStorage()
    for i in range(3):
        prior = optuna.create_study(
            storage=storage,
            study_name=f"prior-{i}",
            sampler=DesignSampler(seed=i, constraints_func=_limit),
        )
        prior.optimize(_constrained, n_trials=30)
    study = optuna.create_study(
        sampler=MetaBOSampler(prior_storage=storage, seed=0, constraints_func=_limit)
    )
    study.optimize(_constrained, n_trials=5)
    assert all(t.user_attrs[USER_ATTR_SOURCE] == SOURCE_PRIOR_DESIGN for t in study.trials)
    # The priors' best configurations are infeasible (x near 1); their feasible ones are used.
    assert all(t.params["x"] <= 0.3 for t in study.trials)
    assert study.sampler.prior_summary()["constraints"] == ["0"]


@pytest.mark.skipif(
    not hasattr(optuna.trial.Trial, "set_constraint"),
    reason="trial.set_constraint is new in Optuna 5.0",
)
def test_constraints_set_in_the_objective_are_used_without_constraints_func() -> None:
    def objective(trial: optuna.Trial) -> float:
        value = _constrained(trial)
        trial.set_constraint("memory", trial.params["x"] - 0.3)
        return value

    study = optuna.create_study(sampler=MetaBOSampler(seed=0, n_startup_trials=3))
    study.optimize(objective, n_trials=5)
    assert study.sampler.prior_summary()["constraints"] == ["memory"]
    assert USER_ATTR_FEASIBILITY in study.trials[-1].user_attrs


def test_prior_fronts_are_non_dominated_in_the_priors_directions_and_recorded_units() -> None:
    storage = optuna.storages.InMemoryStorage()
    prior = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    prior.set_metric_names(["a", "b"])
    for a, b in [(1.0, 1.0), (2.0, 2.0), (0.5, 3.0)]:  # (0.5, 3) is dominated when a is maximized
        trial = prior.ask()
        trial.suggest_float("x", 0.0, 1.0)
        prior.tell(trial, [a, b])
    study = _target(MetaBOSampler(prior_storage=storage, seed=0), n_trials=1)
    (front,) = study.sampler.prior_fronts(study).values()
    assert sorted(map(tuple, front)) == [(1.0, 1.0), (2.0, 2.0)]
