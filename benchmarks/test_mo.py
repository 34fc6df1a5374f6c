"""Tests of the multi-objective and constrained benchmarks: problems, metrics, warm start,
runner and report (quick; no claim about sampler performance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from benchmarks.mo_regret import feasible_bounds
from benchmarks.mo_regret import feasible_regret_curve
from benchmarks.mo_regret import infeasible_share
from benchmarks.mo_regret import Reference
from benchmarks.mo_regret import task_reference
from benchmarks.mo_report import build_mo_report
from benchmarks.mo_report import load_mo_runs
from benchmarks.mo_runner import ensure_mo_prior
from benchmarks.mo_runner import mo_plan
from benchmarks.mo_runner import run_mo_all
from benchmarks.mo_samplers import MO_SAMPLERS
from benchmarks.mo_samplers import WARM_START_TOTAL
from benchmarks.pareto import hypervolume
from benchmarks.pareto import nondominated_mask
from benchmarks.problems.lcbench import lcbench_available
from benchmarks.problems.multi_objective import CONSTRAINTS_ATTR
from benchmarks.problems.multi_objective import DTLZ2Family
from benchmarks.problems.multi_objective import get_mo_problem
from benchmarks.problems.rbv2_rpart import rbv2_rpart_available
from benchmarks.regret import Bounds
from benchmarks.runner import get_storage
from benchmarks.runner import prior_tasks
from benchmarks.runner import Protocol
from benchmarks.runner import RunKey


HAS_LCBENCH = lcbench_available()
HAS_RPART = rbv2_rpart_available()
TINY = Protocol(n_priors=3, prior_trials=12, prior_sampler="tpe", budget=6)


@pytest.mark.parametrize("m", [2, 3])
def test_synthetic_front_is_known(m: int) -> None:
    problem = get_mo_problem("synthetic_mo" if m == 2 else "synthetic_mo3")
    assert isinstance(problem, DTLZ2Family) and problem.directions == ["minimize"] * m
    task = problem.default_targets()[0]
    values = problem.values(task, problem.random_configurations(200, 0))
    assert values.shape == (200, m) and np.all(values >= 0)
    low, high = problem.known_scale(task)
    center = problem.optimal_center(task)
    grid = np.linspace(0, 1, 401 if m == 2 else 41)
    positions = [(u,) for u in grid] if m == 2 else [(u, v) for u in grid for v in grid]
    front = [{f"x{i}": float(x) for i, x in enumerate((*pos, *center))} for pos in positions]
    scaled = (problem.values(task, front) - low) / (high - low)
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), 1.0, atol=1e-12)
    # Random points are never beyond the front; the dense front's volume nears the exact one.
    assert np.all(np.linalg.norm((values - low) / (high - low), axis=1) >= 1.0 - 1e-12)
    reference = np.full(m, 1.1)
    exact = problem.known_hypervolume(task, reference)
    # What the front dominates below the reference point: the box outside the unit ball.
    box = np.random.default_rng(0).uniform(0, 1.1, size=(200_000, m))
    assert abs(1.1**m * (np.linalg.norm(box, axis=1) >= 1).mean() - exact) < 0.01
    dense = scaled if m == 2 else scaled[nondominated_mask(scaled)][::9]
    assert exact - (0.005 if m == 2 else 0.1) < hypervolume(dense, reference) <= exact + 1e-12


def test_hypervolume_regret_on_a_hand_computed_case() -> None:
    # val_accuracy (maximized, scaled by [50, 100]) and time (minimized, scaled by [0, 10]).
    ref = Reference(
        low=np.array([-100.0, 0.0]),
        high=np.array([-50.0, 10.0]),
        signs=np.array([-1.0, 1.0]),
        hypervolume=1.0,
        front=np.zeros((0, 2)),
    )
    values = np.array(
        [
            [95.0, 6.0],  # z = (0.1, 0.6): box 1.0 x 0.5 = 0.5
            [70.0, 7.0],  # z = (0.6, 0.7): dominated by the first, adds nothing
            [70.0, 1.0],  # z = (0.6, 0.1): box 0.5 x 1.0 minus overlap 0.25 -> HV 0.75
            [40.0, 0.0],  # z = (1.2, 0.0): beyond the reference point, adds nothing
            [99.0, 0.5],  # z = (0.02, 0.05): dominates all -> HV 1.08 * 1.05 = 1.134 > ref
        ]
    )
    np.testing.assert_allclose(ref.scale(values[:1]), [[0.1, 0.6]])
    curve = ref.regret_curve(values)
    np.testing.assert_allclose(curve, [0.5, 0.5, 0.25, 0.25, 0.0])
    feasible = np.array([True, True, False, True, False])
    np.testing.assert_allclose(ref.regret_curve(values, feasible), [0.5, 0.5, 0.5, 0.5, 0.5])
    nan_first = np.vstack([[np.nan, np.nan], values])
    np.testing.assert_allclose(ref.regret_curve(nan_first)[:2], [1.0, 0.5])


def test_hypervolume_regret_never_increases_over_a_run(tmp_path: Path) -> None:
    problem = get_mo_problem("synthetic_mo")
    task = problem.default_targets()[0]
    sampler = optuna.samplers.RandomSampler(seed=0)  # a fixed design, not TPE draws
    study = optuna.create_study(directions=problem.directions, sampler=sampler)
    study.optimize(problem.mo_objective(task), n_trials=30)
    curve = task_reference(problem, task, tmp_path).regret_curve(
        np.array([t.values for t in study.trials])
    )
    assert curve.shape == (30,) and np.all((curve >= 0) & (curve <= 1))
    assert np.all(np.diff(curve) <= 1e-12) and curve[-1] < curve[0]


def test_constrained_metric_counts_only_feasible_trials() -> None:
    bounds = Bounds(best=100.0, worst=50.0, direction="maximize")
    values = np.array([99.0, 60.0, 98.0, 75.0, 90.0])
    feasible = np.array([False, True, False, True, True])
    np.testing.assert_allclose(
        feasible_regret_curve(bounds, values, feasible), [1.0, 0.8, 0.8, 0.5, 0.2]
    )
    assert infeasible_share(feasible, 1) == 1.0
    assert infeasible_share(feasible, 3) == pytest.approx(2 / 3)
    assert infeasible_share(feasible, 5) == pytest.approx(0.4)
    np.testing.assert_allclose(feasible_regret_curve(bounds, values, ~feasible * 0), [1.0] * 5)


@pytest.mark.skipif(not (HAS_LCBENCH and HAS_RPART), reason="YAHPO surrogate data not found")
def test_surrogate_families_give_sane_values_and_fronts(tmp_path: Path) -> None:
    for name, (lowest, highest) in (("lcbench_mo", (0.0, 100.0)), ("rbv2_rpart_mo", (0.0, 1.0))):
        problem = get_mo_problem(name)
        assert len(problem.default_targets()) == 8
        task = problem.default_targets()[0]
        assert task not in prior_tasks(problem, task, 0, Protocol())
        values = problem.values(task, problem.random_configurations(300, 1))
        assert values.shape == (300, 2) and np.all(np.isfinite(values))
        assert lowest <= values[:, 0].min() and values[:, 0].max() <= highest
        assert values[:, 1].min() > 0  # a time
    problem = get_mo_problem("lcbench_constrained")
    task = problem.default_targets()[1]
    configs = problem.random_configurations(1000, 7)
    con = problem.constraints(task, configs)
    assert con.shape == (1000, 1) and 0.4 < (con[:, 0] <= 0).mean() < 0.6  # median budget
    bounds = feasible_bounds(problem, task, tmp_path, n_samples=300)
    feasible_values = problem.values(task, configs)[con[:, 0] <= 0, 0]
    assert bounds.best >= feasible_values.max() - 0.5 and bounds.worst <= bounds.best


def test_warm_tpe_enqueues_exactly_the_priors_nondominated_configs(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'warm.db'}"
    protocol = Protocol(n_priors=4, prior_trials=15, prior_sampler="tpe", budget=12)
    results = run_mo_all(mo_plan(["synthetic_mo"], ["warm_tpe"], [0], "1"), protocol, storage)
    assert all(r.startswith(("prior", "done")) for r in results), results
    store = get_storage(storage)
    run = optuna.load_study(storage=store, study_name=results[-1].split()[1])
    union = []
    for name in run.user_attrs["bench:prior_studies"]:
        prior = optuna.load_study(storage=store, study_name=name)
        assert prior.metric_names == ["f0", "f1"] and len(prior.trials) == 15
        union += [t.params for t in prior.best_trials]
    distinct = [p for i, p in enumerate(union) if p not in union[:i]]
    enqueued = [t.params for t in run.trials if "fixed_params" in t.system_attrs]
    assert len(enqueued) == min(WARM_START_TOTAL, len(distinct))
    assert all(p in distinct for p in enqueued)
    assert [t.params for t in run.trials[: len(enqueued)]] == enqueued


@pytest.mark.skipif(not HAS_LCBENCH, reason="LCBench surrogate data not found")
def test_constrained_priors_store_constraints_and_warm_start_uses_feasible_ones(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path / 'con.db'}"
    problem = get_mo_problem("lcbench_constrained")
    target = problem.default_targets()[0]
    names = [
        ensure_mo_prior("lcbench_constrained", t, 0, TINY, storage)
        for t in prior_tasks(problem, target, 0, TINY)
    ]
    feasible_bests = []
    for name in names:
        prior = optuna.load_study(storage=storage, study_name=name)
        for trial in prior.trials:
            stored = trial.constraints  # written by TPESampler's constraints_func
            assert list(stored.values()) == trial.user_attrs[CONSTRAINTS_ATTR]
        feasible = [t for t in prior.trials if all(c <= 0 for c in t.constraints.values())]
        if feasible:
            feasible_bests.append(max(feasible, key=lambda t: t.values[0]).params)
    keys = [RunKey("lcbench_constrained", target, "warm_tpe", 0)]
    assert run_mo_all(keys, TINY, storage)[-1].startswith("done")
    run = optuna.load_study(storage=storage, study_name=keys[0].study_name(TINY))
    assert [t.params for t in run.trials[: len(feasible_bests)]] == feasible_bests
    assert all(t.constraints for t in run.trials)  # TPE got the constraints_func


@pytest.mark.slow
def test_mo_runs_are_stored_and_reported(tmp_path: Path) -> None:
    problems = ["synthetic_mo", "synthetic_mo3"] + (["lcbench_constrained"] if HAS_LCBENCH else [])
    samplers = ["random", "tpe", "gp", "warm_tpe", "metabo"]
    storage = f"sqlite:///{tmp_path / 'mo.db'}"
    keys = mo_plan(problems, samplers, [0], "1")
    results = run_mo_all(keys, TINY, storage, jobs=1, log=False)
    assert not [r for r in results if r.startswith("FAILED")], results
    metabo_reason = MO_SAMPLERS["metabo"].unavailable()
    runs = load_mo_runs(storage, protocol=TINY.tag)
    assert len(runs) == len(keys) - (len(problems) if metabo_reason else 0)
    for run in runs:
        assert run.values.shape == (TINY.budget, len(get_mo_problem(run.problem).directions))
    study = optuna.load_study(storage=storage, study_name=keys[0].study_name(TINY))
    assert study.metric_names == ["f0", "f1"] and len(study.directions) == 2
    path = build_mo_report(storage, TINY, tmp_path, "mo-test", cache_dir=tmp_path / "cache")
    text = path.read_text()
    for problem in problems:
        assert f"## {problem}" in text and (tmp_path / f"mo-test-{problem.replace('_', '-')}.png")
    for heading in ("Mean hypervolume regret", "relative to GPSampler", "warm-start TPE"):
        assert heading in text
    if HAS_LCBENCH:
        assert "Share of infeasible trials" in text and "Mean feasible regret" in text
    assert "## Never worse than the front warm start (issue 25)" in text
    if metabo_reason:
        assert "Samplers skipped" in text
    else:
        assert "Paired differences" in text
        assert "Paired against the front warm start (issue 25):" in text
