"""Quick-mode tests of the learning-curve and failure benchmarks (issue 24).

They check the problems, the metrics, that the protocols run, are stored and are reported,
and that MetaBOSampler never repeats a pruned or failed configuration; they make no claim
about performance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import create_trial
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import pytest

from benchmarks.lc_metrics import best_completed_by_cost
from benchmarks.lc_metrics import failed_count
from benchmarks.lc_metrics import repeats
from benchmarks.lc_report import build_lc_report
from benchmarks.lc_report import load_lc_runs
from benchmarks.lc_report import Selection
from benchmarks.lc_runner import FULL_TRAINING
from benchmarks.lc_runner import lc_plan
from benchmarks.lc_runner import run_lc_all
from benchmarks.lc_samplers import Arm
from benchmarks.lc_samplers import ARMS
from benchmarks.lc_samplers import PRUNED_TRIALS_MODES
from benchmarks.problems.lcbench import lcbench_available
from benchmarks.problems.learning_curves import EPOCHS_ATTR
from benchmarks.problems.learning_curves import FAILURE_ATTR
from benchmarks.problems.learning_curves import failure_kinds
from benchmarks.problems.learning_curves import failure_shares
from benchmarks.problems.learning_curves import get_lc_problem
from benchmarks.problems.learning_curves import LCBenchCurves
from benchmarks.runner import get_storage
from benchmarks.runner import Protocol
from benchmarks.samplers import SamplerSpec


pytestmark = pytest.mark.skipif(not lcbench_available(), reason="LCBench surrogate not found")
CURVES = Protocol(n_priors=3, prior_trials=10, prior_sampler="tpe", budget=4 * FULL_TRAINING)
FAILURES = Protocol(n_priors=3, prior_trials=10, prior_sampler="tpe", budget=10)
GOOD = {"batch_size": 32, "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
GOOD |= {"num_layers": 3, "max_units": 256, "max_dropout": 0.2}


class _Repeater(optuna.samplers.RandomSampler):
    """A sampler that proposes the latest pruned or failed configuration again."""

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: Any
    ) -> Any:
        states = (TrialState.PRUNED, TrialState.FAIL)
        earlier = [t for t in study.get_trials(deepcopy=False, states=states) if name in t.params]
        if earlier:
            return earlier[-1].params[name]
        return super().sample_independent(study, trial, name, distribution)


def _pruned_variants() -> list[str]:
    return [
        f"metabo_hb_{m}" for m in PRUNED_TRIALS_MODES if not ARMS[f"metabo_hb_{m}"].unavailable()
    ]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run both protocols once for the module, with a deliberately repeating sampler."""
    root = tmp_path_factory.mktemp("lc")
    storage = f"sqlite:///{root / 'lc.db'}"
    repeater = SamplerSpec(lambda seed, _p: _Repeater(seed=seed), description="repeats")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ARMS, "repeater_hb", Arm(repeater, "hyperband"))
        patch.setitem(ARMS, "repeater", Arm(repeater))
        arms = ["random_hb", "warm_tpe_hb", "gp_hb", "metabo", "metabo_hb", "repeater_hb"]
        curves = lc_plan(["lcbench_lc"], arms + _pruned_variants(), range(1), "1")
        problems = ["lcbench_fail", "lcbench_fail_clean"]
        failures = lc_plan(problems, ["tpe", "warm_tpe", "metabo", "repeater"], range(1), "1")
        results = run_lc_all(curves, CURVES, storage, log=False)
        results += run_lc_all(failures, FAILURES, storage, log=False)
        lc = load_lc_runs(storage, Selection(CURVES, ["lcbench_lc"]), root, 200)
        fail = load_lc_runs(storage, Selection(FAILURES, problems), root, 200)
    return {"root": root, "storage": storage, "results": results, "lc": lc, "fail": fail}


def test_curve_objective_reports_every_epoch_and_records_the_epochs() -> None:
    problem = get_lc_problem("lcbench_lc")
    assert isinstance(problem, LCBenchCurves)
    full = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    full.optimize(problem.objective("3945"), n_trials=2)
    for trial in full.trials:
        assert sorted(trial.intermediate_values) == list(range(1, FULL_TRAINING + 1))
        assert trial.user_attrs[EPOCHS_ATTR] == FULL_TRAINING
        assert trial.value == pytest.approx(problem.evaluate("3945", trial.params), abs=1e-4)
        assert trial.value == trial.intermediate_values[FULL_TRAINING]
    pruner = optuna.pruners.ThresholdPruner(lower=1000.0, n_warmup_steps=2)
    pruned = optuna.create_study(direction="maximize", pruner=pruner)
    pruned.optimize(problem.objective("3945"), n_trials=1)
    trial = pruned.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs[EPOCHS_ATTR] == max(trial.intermediate_values) == 2
    curves = problem.curves("3945", problem.random_configurations(20, 0))
    assert curves.shape == (20, FULL_TRAINING)
    assert np.median(curves[:, -1] - curves[:, 0]) > 0  # they learn


def test_failure_problem_fails_out_of_memory_and_by_divergence() -> None:
    huge = {**GOOD, "num_layers": 5, "max_units": 1024, "batch_size": 512}
    diverging = {**GOOD, "learning_rate": 0.1, "batch_size": 16}
    assert failure_kinds([GOOD, huge, diverging]) == [None, "oom", "nan"]
    problem = get_lc_problem("lcbench_fail")
    values = problem.evaluate_many("3945", [GOOD, huge, diverging])
    assert np.isfinite(values[0]) and np.isnan(values[1:]).all()
    study = optuna.create_study(direction="maximize")
    for params in (GOOD, huge, diverging):
        study.enqueue_trial(params)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        study.optimize(problem.objective("3945"), n_trials=3)
    study.optimize(problem.objective("3945"), n_trials=1, catch=(RuntimeError,))
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert [t.user_attrs.get(FAILURE_ATTR) for t in study.trials] == [None, "oom", "nan"]
    assert failed_count(study.trials) == 2 and failed_count(study.trials, 2) == 1
    prior = optuna.create_study(direction="maximize")
    for params in (huge, diverging):
        prior.enqueue_trial(params)
    prior.optimize(get_lc_problem("lcbench_fail_clean").prior_objective("3945"), n_trials=2)
    assert all(t.state == TrialState.COMPLETE for t in prior.trials)  # clean priors never fail


def test_the_wall_cuts_through_the_good_configurations() -> None:
    shares = failure_shares(n=2000, seed=0)
    assert 0.3 <= shares["random_fail"] <= 0.5
    assert shares["random_oom"] > shares["random_nan"] > 0
    assert shares["top_fail"] >= 0.4 and shares["top_fail_majority"] >= 0.5


def _trial(state: TrialState, x: float, n: int, value: float | None = 1.0) -> FrozenTrial:
    dists = {
        "x": FloatDistribution(1e-3, 1.0, log=True),
        "k": IntDistribution(1, 5),
        "c": CategoricalDistribution(["a", "b"]),
    }
    params = {"x": x, "k": n, "c": "a"}
    value = value if state == TrialState.COMPLETE else None
    return create_trial(state=state, params=params, distributions=dists, value=value)


def test_repeats_are_configurations_of_earlier_pruned_or_failed_trials() -> None:
    trials = [
        _trial(TrialState.PRUNED, 0.1, 1),
        _trial(TrialState.COMPLETE, 0.2, 1),
        _trial(TrialState.COMPLETE, 0.1 * (1 + 1e-9), 1),  # the pruned one again
        _trial(TrialState.COMPLETE, 0.2, 1),  # repeats a completed one: not counted
        _trial(TrialState.FAIL, 0.3, 2),
        _trial(TrialState.COMPLETE, 0.3, 3),  # another integer: a new configuration
        _trial(TrialState.COMPLETE, 0.3, 2),  # the failed one again
        _trial(TrialState.FAIL, 0.4, 2),  # how Optuna stores a NaN value
        _trial(TrialState.PRUNED, 0.4, 2),
        _trial(TrialState.COMPLETE, 0.101, 1),  # near, but not the same
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    assert repeats(trials) == [2, 6, 8]


def test_best_completed_trial_by_cost_counts_only_finished_completed_trials() -> None:
    trials = [
        _trial(TrialState.PRUNED, 0.1, 1),
        _trial(TrialState.COMPLETE, 0.2, 1, value=3.0),
        _trial(TrialState.COMPLETE, 0.3, 1, value=1.0),
        _trial(TrialState.COMPLETE, 0.4, 1, value=5.0),
    ]
    best = best_completed_by_cost(trials, np.array([2.0, 3.0, 1.0, 4.0]), 9, "maximize")
    np.testing.assert_array_equal(best[:4], [np.nan] * 4)  # spent 2 (pruned), then 5
    np.testing.assert_array_equal(best[4:], [3.0, 3.0, 3.0, 3.0, 3.0])  # 5 at cost 10 > 9


@pytest.mark.slow
def test_protocols_run_and_are_stored(quick: dict[str, Any]) -> None:
    assert not [r for r in quick["results"] if r.startswith("FAILED")], quick["results"]
    store = get_storage(quick["storage"])
    assert quick["lc"] and quick["fail"]
    for run in quick["lc"] + quick["fail"]:
        problem = get_lc_problem(run.problem)
        budget = CURVES.budget if run.unit > 1 else FAILURES.budget
        costs = [problem.cost(t) for t in run.trials]
        assert sum(costs) >= budget > sum(costs) - costs[-1]  # stopped once it was spent
        assert all(t.user_attrs["bench:sampler_seconds"] >= 0 for t in run.trials)
        assert ((run.regret >= 0) & (run.regret <= 1)).all()
        assert (np.diff(run.regret) <= 0).all()
    curves = get_lc_problem("lcbench_lc")
    for run in quick["lc"]:
        assert all(curves.cost(t) == max(t.intermediate_values) for t in run.trials)
        if run.arm.endswith("_hb"):
            assert any(t.state == TrialState.PRUNED for t in run.trials)
    priors = {n for run in quick["lc"] + quick["fail"] for n in run.prior_studies}
    for name in priors:
        trials = optuna.load_study(study_name=name, storage=store).trials
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        failed = sum(t.state == TrialState.FAIL for t in trials)
        if "lcbench_lc" in name:
            assert pruned > 0  # Hyperband priors
        else:
            assert (failed > 0) == name.startswith("prior-lcbench_fail-"), name


@pytest.mark.slow
def test_no_trial_repeats_a_pruned_or_failed_configuration(quick: dict[str, Any]) -> None:
    runs = quick["lc"] + quick["fail"]
    ours = [r for r in runs if r.arm.startswith("metabo")]
    assert {r.problem for r in ours} == {"lcbench_lc", "lcbench_fail", "lcbench_fail_clean"}
    for run in ours:
        assert run.repeats == [], (run.arm, run.problem, run.repeats)
    # Not vacuous: MetaBOSampler's runs hold pruned and failed trials to repeat ...
    states = {t.state for r in ours for t in r.trials}
    assert {TrialState.PRUNED, TrialState.FAIL} <= states
    # ... and the same check catches a sampler that repeats them.
    repeaters = [r for r in runs if r.arm.startswith("repeater")]
    assert len(repeaters) == 3 and all(r.repeats for r in repeaters)


@pytest.mark.slow
def test_reports_are_produced(quick: dict[str, Any], tmp_path: Path) -> None:
    problems = ["lcbench_fail", "lcbench_fail_clean"]
    for protocol, names, stem in (
        (CURVES, ["lcbench_lc"], "lc"),
        (FAILURES, problems, "fail"),
    ):
        selection = Selection(protocol, names)
        path = build_lc_report(
            quick["storage"], selection, tmp_path, stem, cache_dir=quick["root"], n_samples=200
        )
        text = path.read_text()
        assert "Mean regret ± SE" in text and "Targets of issue 24" in text
        assert "| metabo |" in text and "no trial repeats" in text
        for name in names:
            assert (tmp_path / f"{stem}-{name}.png").stat().st_size > 1000
    curves = (tmp_path / "lc.md").read_text()
    assert "| metabo_hb minus | pairs |" in curves and "pruned share" in curves
    assert "@3: below tpe_hb" not in curves  # no tpe_hb runs: that target is not checked
    failures = (tmp_path / "fail.md").read_text()
    assert "at most half of TPE's failed trials" in failures and "Failure wall" in failures
