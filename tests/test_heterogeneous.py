"""Transfer from histories whose search spaces differ from the target's.

Grown spaces (priors lack a target parameter), shrunk spaces (priors tuned a parameter the
target holds fixed), conditional target spaces, and the mixed cases between them.
"""

from __future__ import annotations

from collections.abc import Callable
import logging
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import pytest

from optuna_metabo import MetaBOSampler
from optuna_metabo._core.search_space import SearchSpace
from optuna_metabo._dashboard.callback import transfer_note

from fixed_design import DesignSampler


HELD_B = 0.25  # where the grown-space priors held ``b``; the target's best ``b`` is 0.3


def _grown_value(shift: float, a: float, b: float, c: float) -> float:
    return (a - shift) ** 2 + (c - 0.6) ** 2 + 2 * (b - 0.3) ** 2


def _grown_target(trial: optuna.Trial) -> float:
    a, b, c = (trial.suggest_float(n, 0, 1) for n in "abc")
    return _grown_value(0.55, a, b, c)


def _grown_priors(storage: Any, n_trials: int = 25) -> None:
    """Three prior studies that tuned ``a`` and ``c`` and held ``b`` at ``HELD_B``."""
    for i, shift in enumerate([0.45, 0.5, 0.6]):
        study = optuna.create_study(
            storage=storage, study_name=f"grown-{i}", sampler=DesignSampler(seed=i)
        )
        study.optimize(
            lambda t, s=shift: _grown_value(
                s, t.suggest_float("a", 0, 1), HELD_B, t.suggest_float("c", 0, 1)
            ),
            n_trials=n_trials,
        )


def storage_trials(storage: Any, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).trials


def _best_after(sampler: MetaBOSampler, objective: Callable, n: int) -> optuna.Study:
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n)
    return study


def _sampler(storage: Any, seed: int = 0, **kwargs: Any) -> MetaBOSampler:
    return MetaBOSampler(prior_storage=storage, seed=seed, **kwargs)


@pytest.mark.slow
def test_grown_space_transfers_with_and_without_prior_defaults() -> None:
    storage = optuna.storages.InMemoryStorage()
    _grown_priors(storage)
    best: dict[str, list[float]] = {"unknown": [], "default": [], "plain": []}
    for seed in range(8):
        for label, sampler in {
            "unknown": _sampler(storage, seed),
            "default": _sampler(storage, seed, prior_defaults={"b": HELD_B}),
            "plain": MetaBOSampler(seed=seed),
        }.items():
            study = _best_after(sampler, _grown_target, 10)
            best[label].append(study.best_value)
            if label == "plain":
                continue
            assert study.trials[0].user_attrs["metabo:source"] == "prior_design"
            used = sampler.prior_summary()["used"]
            assert len(used) == 3
            handling = used[0]["lacked"]["b"]
            if label == "default":
                assert handling == {"handling": "default", "value": HELD_B}
            else:  # said, not silently imputed: the learned value is reported
                assert handling["handling"] == "unknown"
                assert 0.0 <= handling["learned_value"] <= 1.0
    # Medians over eight seeds: learning the held value from a few target trials can go wrong
    # on one seed, which a mean would weigh like the others. Measured with these priors: the
    # medians are 0.002 (unknown), 0.005 (default) and 0.030 (plain).
    assert np.median(best["unknown"]) < np.median(best["plain"]) / 3
    assert np.median(best["default"]) < np.median(best["plain"]) / 3


def test_all_priors_lacking_a_parameter_lets_the_design_explore_it() -> None:
    storage = optuna.storages.InMemoryStorage()
    _grown_priors(storage, n_trials=15)
    study = _best_after(_sampler(storage), _grown_target, 5)
    design = [t for t in study.trials if t.user_attrs["metabo:source"] == "prior_design"]
    # The priors cannot rank results that b changes, so the ranking test may hand the last
    # trials of the design to the model (it does after 3 on Optuna 5.1.0); the design itself
    # never pins b at one guess: every design trial tries a new b.
    assert len(design) >= 3
    assert len({round(t.params["b"], 6) for t in design}) == len(design)


def _shrunk_prior(storage: Any) -> None:
    """A prior that tuned ``a`` and ``m``; its best ``a`` equals ``m``."""
    study = optuna.create_study(
        storage=storage, study_name="shrunk", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(
        lambda t: (t.suggest_float("a", 0, 1) - t.suggest_float("m", 0, 1)) ** 2, n_trials=80
    )


def test_fixed_params_make_prior_trials_near_the_value_count_more() -> None:
    storage = optuna.storages.InMemoryStorage()
    _shrunk_prior(storage)

    def target(trial: optuna.Trial) -> float:  # holds m at 0.9
        return (trial.suggest_float("a", 0, 1) - 0.9) ** 2

    regrets = {}
    for label, kwargs in {"fixed": {"fixed_params": {"m": 0.9}}, "dropped": {}}.items():
        sampler = _sampler(storage, **kwargs)
        study = _best_after(sampler, target, 3)
        regrets[label] = study.best_value
        (used,) = sampler.prior_summary()["used"]
        assert used["extra"] == {"m": "fixed_params" if kwargs else "dropped"}
    assert regrets["fixed"] < 0.01
    assert regrets["fixed"] < 0.25 * regrets["dropped"]


def _conditional(trial: optuna.Trial) -> float:
    model = trial.suggest_categorical("model", ["linear", "tree"])
    x = trial.suggest_float("x", 0, 1)
    if model == "linear":
        return 0.2 + (trial.suggest_float("alpha", 1e-3, 1.0, log=True) - 0.05) ** 2 + x**2
    depth = trial.suggest_int("depth", 1, 12)
    return 0.02 * (depth - 7) ** 2 + (trial.suggest_float("leaf", 0, 1) - 0.3) ** 2 + x**2


@pytest.mark.slow
def test_conditional_target_space_is_modelled_not_sampled_at_random(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sampler = MetaBOSampler(seed=0, n_startup_trials=4)
    with caplog.at_level(logging.WARNING):
        study = _best_after(sampler, _conditional, 25)
    # Each branch parameter goes to the independent sampler only until a trial has used it.
    warned = [r.getMessage() for r in caplog.records if "outside the relative" in r.message]
    assert len(warned) <= 3
    late = study.trials[10:]
    assert all(t.user_attrs["metabo:source"] in ("model", "target_model") for t in late)
    tree = [t for t in late if t.params["model"] == "tree"]
    assert tree, "the better branch is found"
    best = study.best_trial.params
    assert (
        best["model"] == "tree" and abs(best["depth"] - 7) <= 1 and abs(best["leaf"] - 0.3) < 0.1
    )


def test_priors_of_a_conditional_space_inform_every_branch() -> None:
    storage = optuna.storages.InMemoryStorage()
    for i in range(2):
        prior = optuna.create_study(
            storage=storage, study_name=f"cond-{i}", sampler=DesignSampler(seed=i)
        )
        prior.optimize(_conditional, n_trials=40)
    sampler = _sampler(storage)
    study = _best_after(sampler, _conditional, 3)
    assert [t.user_attrs["metabo:source"] for t in study.trials] == ["prior_design"] * 3
    # A prior-design trial in a branch the target has not seen takes the branch parameters
    # of the prior configuration it re-uses, not random values.
    prior_trials = [t for s in ("cond-0", "cond-1") for t in storage_trials(storage, s)]
    assert all(any(t.params == p.params for p in prior_trials) for t in study.trials)
    # The target is the priors' task, so re-running their best configuration is optimal.
    assert study.best_value == pytest.approx(min(p.value for p in prior_trials), abs=1e-12)


def _params_study(
    storage: Any,
    name: str,
    space: dict[str, BaseDistribution],
    value: Callable[[dict[str, Any]], float],
    n: int = 20,
) -> None:
    study = optuna.create_study(storage=storage, study_name=name)
    rng = np.random.RandomState(len(name))
    for _ in range(n):
        params = {}
        for key, dist in space.items():
            if isinstance(dist, CategoricalDistribution):
                params[key] = dist.choices[rng.randint(len(dist.choices))]
            elif isinstance(dist, IntDistribution):
                params[key] = int(rng.randint(dist.low, dist.high + 1))
            else:
                params[key] = float(rng.uniform(dist.low, dist.high))
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=space, value=value(params))
        )


UNIT = FloatDistribution(0.0, 1.0)


def _abc(p: dict[str, Any]) -> float:
    return sum((p.get(k, 0.5) - 0.4) ** 2 for k in "abc")


def _abc_target(trial: optuna.Trial) -> float:
    return _abc({k: trial.suggest_float(k, 0, 1) for k in "abc"})


def test_priors_that_lack_different_parameters_are_all_used() -> None:
    storage = optuna.storages.InMemoryStorage()
    _params_study(storage, "lacks-a", {"b": UNIT, "c": UNIT}, _abc)
    _params_study(storage, "lacks-b", {"a": UNIT, "c": UNIT}, _abc)
    sampler = _sampler(storage)
    _best_after(sampler, _abc_target, 4)
    used = {u["study_name"]: u for u in sampler.prior_summary()["used"]}
    assert set(used["lacks-a"]["lacked"]) == {"a"} and set(used["lacks-b"]["lacked"]) == {"b"}
    assert used["lacks-a"]["lacked"]["a"]["learned_value"] is not None


def test_parameter_kinds_that_differ_are_matched_by_value() -> None:
    storage = optuna.storages.InMemoryStorage()
    # int in the prior, float in the target; a categorical whose choices only partly overlap.
    _params_study(
        storage,
        "kinds",
        {"n": IntDistribution(0, 10), "kind": CategoricalDistribution(["u", "v", "old"])},
        lambda p: p["n"] / 10 + (p["kind"] == "u"),
        n=30,
    )

    def target(trial: optuna.Trial) -> float:
        kind = trial.suggest_categorical("kind", ["u", "v", "new"])
        return trial.suggest_float("n", 0.0, 10.0) / 10 + (kind == "u")

    sampler = _sampler(storage)
    _best_after(sampler, target, 3)
    (used,) = sampler.prior_summary()["used"]
    assert used["lacked"] == {} and used["extra"] == {}
    assert used["n_trials_usable"] < 30  # the trials with the choice "old" are dropped


@pytest.mark.slow
def test_a_prior_lacking_the_parent_of_a_branch_is_used() -> None:
    storage = optuna.storages.InMemoryStorage()
    # The prior always trained with SGD and never had the ``opt`` choice.
    _params_study(
        storage, "sgd-only", {"lr": UNIT, "momentum": UNIT}, lambda p: (p["momentum"] - 0.8) ** 2
    )

    def target(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 0, 1)
        if trial.suggest_categorical("opt", ["sgd", "adam"]) == "sgd":
            return (trial.suggest_float("momentum", 0, 1) - 0.8) ** 2 + 0.1 * lr
        return 0.3 + 0.1 * lr

    sampler = _sampler(storage, n_prior_design_trials=2)
    study = _best_after(sampler, target, 12)
    (used,) = sampler.prior_summary()["used"]
    assert used["lacked"]["opt"]["handling"] == "unknown"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert study.best_value < 0.05


def test_dynamic_spaces_that_change_mid_study_never_crash() -> None:
    def objective(trial: optuna.Trial) -> float:
        n = trial.number
        value = trial.suggest_float("x", 0, 1 + (n >= 6))  # the range widens
        if n >= 4:  # a parameter is added
            value += trial.suggest_float("new", 0, 1)
        if n < 8:  # and another one is dropped
            value += trial.suggest_int("gone", 1, 3)
        if n % 2:  # and one comes and goes
            value += trial.suggest_categorical("odd", ["p", "q"]) == "p"
        return value

    sampler = MetaBOSampler(seed=0, n_startup_trials=3)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=14, catch=())
    assert len(study.trials) == 14
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["metabo:source"] for t in study.trials[8:]} <= {"model", "independent"}


def test_note_says_how_each_prior_parameter_was_handled() -> None:
    summary = {
        "used": [
            {
                "study_name": "old",
                "n_trials_used": 3,
                "n_trials_usable": 3,
                "n_trials_total": 3,
                "lacked": {
                    "epochs": {"handling": "default", "value": 5},
                    "lr": {"handling": "unknown", "learned_value": 0.01},
                },
                "extra": {"momentum": "fixed_params", "seed": "dropped"},
            }
        ],
        "skipped": [],
        "task_similarity": {"old": 0.5},
    }
    note = transfer_note(summary, 3, 3, {"model": 3}, None)
    assert "lacks `epochs` | held at `5` (prior_defaults)" in note
    assert "lacks `lr` | unknown: the value it was held at is learned (now ≈ `0.01`)" in note
    assert "also tuned `momentum` | model input at the target's fixed value" in note
    assert "also tuned `seed` | dropped" in note


def test_a_branch_the_target_has_not_run_takes_the_priors_best_values_for_it() -> None:
    """The model picks ``tree`` before any target trial ran it: ``depth`` and ``leaf`` come
    from the best prior configuration on that branch, not from the independent sampler."""
    from optuna_metabo._history.priors import EncodedPrior
    from optuna_metabo._sampler import _best_prior_params_alike

    space = SearchSpace({"model": CategoricalDistribution(["linear", "tree"]), "x": UNIT})
    rows, params, values = [], [], []
    for model, depth, y in [("tree", 3, 0.5), ("tree", 7, 0.1), ("linear", None, 0.0)]:
        p = {"model": model, "x": 0.5, **({"depth": depth} if depth else {})}
        rows.append(space.encode(p))
        params.append(p)
        values.append(y)
    prior = EncodedPrior(name="p", x=np.array(rows), y=np.array(values), params=params)
    proposed = space.encode({"model": "tree", "x": 0.9})
    assert _best_prior_params_alike([prior], space, proposed) == {"depth": 7}
    proposed = space.encode({"model": "linear", "x": 0.1})
    assert _best_prior_params_alike([prior], space, proposed) == {}
