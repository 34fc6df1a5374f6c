"""Quick-mode tests of the benchmark harness: runs complete, are stored and are reported.

They make no claim about sampler performance. ``--full`` adds the full benchmark run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
from typing import Any

import numpy as np
import optuna
import pytest

from benchmarks import REPO_ROOT
from benchmarks.conftest import bench_option
from benchmarks.conftest import full_mode
from benchmarks.problems import get_problem
from benchmarks.problems import Problem
from benchmarks.problems import problem_names
from benchmarks.problems import register_problem
from benchmarks.problems.lcbench import lcbench_available
from benchmarks.problems.lcbench import yahpo_dir
from benchmarks.regret import best_so_far
from benchmarks.regret import Bounds
from benchmarks.regret import BOUNDS_METHOD
from benchmarks.regret import estimate_bounds
from benchmarks.regret import task_bounds
from benchmarks.report import attach_regret
from benchmarks.report import beyond_bounds
from benchmarks.report import build_report
from benchmarks.report import load_runs
from benchmarks.report import reuse_floors
from benchmarks.report import Run
from benchmarks.runner import get_storage
from benchmarks.runner import plan
from benchmarks.runner import prior_name
from benchmarks.runner import prior_tasks
from benchmarks.runner import Protocol
from benchmarks.runner import run_all
from benchmarks.runner import RunKey
from benchmarks.samplers import SAMPLERS
from benchmarks.samplers import SECONDS_ATTR


QUICK = Protocol(n_priors=3, prior_trials=10, prior_sampler="tpe", budget=5)
QUICK_SAMPLERS = ["random", "tpe", "gp", "warm_tpe", "meta_learn_tpe", "metabo"]
HAS_LCBENCH = lcbench_available()


def _quick_problems() -> list[str]:
    names = [n for n in problem_names() if n != "lcbench" and n in get_problem_names_builtin()]
    return names + (["lcbench"] if HAS_LCBENCH else [])


def get_problem_names_builtin() -> set[str]:
    """Built-in problems (plugins registered by other tests are excluded)."""
    from benchmarks.problems import SYNTHETIC

    return set(SYNTHETIC) | {"lcbench"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run the quick benchmark once for the module."""
    root = tmp_path_factory.mktemp("bench")
    storage = f"sqlite:///{root / 'quick.db'}"
    keys = plan(_quick_problems(), QUICK_SAMPLERS, range(1), "1")
    results = run_all(keys, QUICK, storage, jobs=1, log=False)
    return {"root": root, "storage": storage, "keys": keys, "results": results}


def test_registry_has_baselines_and_metabo() -> None:
    for name in ("random", "tpe", "gp", "warm_tpe", "meta_learn_tpe", "metabo"):
        assert name in SAMPLERS
    assert SAMPLERS["metabo"].unavailable() is None, SAMPLERS["metabo"].unavailable()


def test_meta_learn_tpe_is_skipped_with_a_clear_message_offline() -> None:
    reason = SAMPLERS["meta_learn_tpe"].unavailable()
    if reason is None:
        pytest.skip("OptunaHub meta_learn_tpe loaded here (network available)")
    assert "meta_learn_tpe" in reason


@pytest.mark.parametrize("name", sorted(get_problem_names_builtin()))
def test_problem_evaluates_random_configurations(name: str) -> None:
    if name == "lcbench" and not HAS_LCBENCH:
        pytest.skip(f"LCBench surrogate not found in {yahpo_dir()}; set METABO_YAHPO_DIR")
    problem = get_problem(name)
    for task in problem.default_targets()[:2] + problem.prior_pool(problem.all_targets()[0])[:1]:
        values = problem.random_values(task, 50, seed=0)
        assert values.shape == (50,) and np.all(np.isfinite(values))
        optimum = problem.known_optimum(task)
        if optimum is not None:
            sign = -1 if problem.direction == "maximize" else 1
            assert np.all(sign * values >= sign * optimum - 1e-6)


def test_conditional_family_only_defines_active_params() -> None:
    problem = get_problem("conditional")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(problem.objective("t00"), n_trials=30)
    for trial in study.trials:
        active = {"linear": {"alpha"}, "tree": {"depth", "min_leaf"}, "net": {"lr", "width"}}
        assert set(trial.params) == {"model", "scale"} | active[trial.params["model"]]


def test_negative_family_priors_are_unrelated_or_flipped() -> None:
    problem = get_problem("negative")
    target = problem.default_targets()[0]
    pool = problem.prior_pool(target)
    assert pool and all(t[:3] in ("neg", "unr") for t in pool)
    drawn = prior_tasks(problem, target, 0, Protocol())
    assert len(drawn) == 10 and set(drawn) <= set(pool) and target not in drawn


def test_lcbench_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("METABO_YAHPO_DIR", raising=False)
    assert yahpo_dir() == (REPO_ROOT.parent / "shared" / "data" / "yahpo").resolve()
    monkeypatch.setenv("METABO_YAHPO_DIR", str(tmp_path))
    assert yahpo_dir() == tmp_path.resolve() and not lcbench_available()
    from benchmarks.problems.lcbench import LCBench

    with pytest.raises(FileNotFoundError, match="METABO_YAHPO_DIR"):
        LCBench()


@pytest.mark.skipif(not HAS_LCBENCH, reason="LCBench surrogate data not found")
def test_lcbench_protocol_leaves_target_out() -> None:
    problem = get_problem("lcbench")
    assert problem.direction == "maximize" and len(problem.tasks()) == 34
    assert len(problem.default_targets()) == 8
    for seed in range(3):
        drawn = prior_tasks(problem, "3945", seed, Protocol())
        assert len(drawn) == 10 and "3945" not in drawn
    assert prior_tasks(problem, "3945", 0, Protocol()) != prior_tasks(
        problem, "3945", 1, Protocol()
    )
    values = problem.random_values("3945", 100, 0)
    assert values.min() >= 0 and values.max() <= 100


def test_regret_definition() -> None:
    values = np.array([5.0, 3.0, np.nan, 4.0, 1.0])
    np.testing.assert_allclose(best_so_far(values, "minimize"), [5, 3, 3, 3, 1])
    np.testing.assert_allclose(best_so_far(-values, "maximize"), [-5, -3, -3, -3, -1])
    bounds = Bounds(best=1.0, worst=11.0, direction="minimize")
    np.testing.assert_allclose(bounds.regret(np.array([11.0, 6.0, 1.0])), [1.0, 0.5, 0.0])
    # Beyond the bounds the regret is clipped: 0 for a better value, 1 for a worse one.
    maximize = Bounds(90.0, 50.0, "maximize")
    np.testing.assert_allclose(maximize.regret(np.array([40.0, 70.0, 95.0])), [1.0, 0.5, 0.0])


def test_bounds_are_computed_once_and_cached(tmp_path: Path) -> None:
    problem = get_problem("branin")
    calls = []
    original = problem.random_configurations

    def counting(n: int, seed: int) -> list[dict[str, Any]]:
        calls.append(n)
        return original(n, seed)

    problem.random_configurations = counting  # type: ignore[method-assign]
    try:
        first = task_bounds(problem, "t01", tmp_path, n_samples=300)
        second = task_bounds(problem, "t01", tmp_path, n_samples=300)
    finally:
        del problem.random_configurations
    assert calls == [300] and first == second
    cached = json.loads((tmp_path / "bounds-branin.json").read_text())
    assert cached["t01"]["n_samples"] == 300 and cached["t01"]["method"] == BOUNDS_METHOD
    assert first.best == pytest.approx(problem.known_optimum("t01"))


def test_local_search_finds_the_optimum_that_random_samples_miss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem = get_problem("hartmann6")
    optimum = problem.known_optimum("t00")
    assert optimum is not None
    monkeypatch.setattr(problem, "known_optimum", lambda task: None)
    best, worst = estimate_bounds(problem, "t00", n_samples=500)
    random_values = problem.random_values("t00", 500, 0)
    assert worst == pytest.approx(float(random_values.max()))
    span = worst - optimum
    assert float(random_values.min()) - optimum > 0.05 * span  # random points are far from it
    assert best - optimum < 1e-3 * span  # the local search is not
    assert estimate_bounds(problem, "t00", n_samples=500) == (best, worst)


def test_regret_does_not_change_when_runs_are_added(tmp_path: Path) -> None:
    """The bounds come from the problem: a better run added later changes no earlier number."""

    def run(values: list[float], seed: int) -> Run:
        return Run("branin", "branin", "t01", "tpe", seed, 3, np.array(values), np.zeros(3))

    first = run([40.0, 20.0, 15.0], 0)
    attach_regret([first], tmp_path, 300)
    before = first.regret.copy()
    better = run([30.0, 12.0, 10.5], 1)
    again = run([40.0, 20.0, 15.0], 0)
    attach_regret([again, better], tmp_path, 300)
    np.testing.assert_array_equal(again.regret, before)
    assert beyond_bounds([again, better]) == []


@pytest.mark.slow
def test_quick_runs_complete_and_are_stored(quick: dict) -> None:
    results = quick["results"]
    assert not [r for r in results if r.startswith("FAILED")], results
    storage = get_storage(quick["storage"])
    for key in quick["keys"]:
        name = key.study_name(QUICK)
        if SAMPLERS[key.sampler].unavailable():
            assert any(r.startswith("skipped (unavailable)") and name in r for r in results)
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        attrs = study.user_attrs
        assert attrs["bench:complete"] is True
        assert (attrs["bench:problem"], attrs["bench:target"]) == (key.problem, key.target)
        assert (attrs["bench:sampler"], attrs["bench:seed"]) == (key.sampler, key.seed)
        assert attrs["bench:protocol"] == QUICK.tag and attrs["bench:budget"] == 5
        assert len(study.trials) == QUICK.budget
        assert all(t.user_attrs[SECONDS_ATTR] >= 0 for t in study.trials)
        if SAMPLERS[key.sampler].uses_priors:
            expected = [
                prior_name(key.problem, t, key.seed, QUICK)
                for t in prior_tasks(get_problem(key.problem), key.target, key.seed, QUICK)
            ]
            assert attrs["bench:prior_studies"] == expected
            for prior in expected:
                assert len(optuna.load_study(study_name=prior, storage=storage).trials) == 10


@pytest.mark.slow
def test_warm_start_enqueues_the_best_prior_configurations(quick: dict) -> None:
    storage = get_storage(quick["storage"])
    key = next(k for k in quick["keys"] if k.sampler == "warm_tpe")
    study = optuna.load_study(study_name=key.study_name(QUICK), storage=storage)
    bests = [
        optuna.load_study(study_name=name, storage=storage).best_params
        for name in study.user_attrs["bench:prior_studies"]
    ]
    first = [t.params for t in study.trials[: len(bests)]]
    assert all(best in first for best in bests)


@pytest.mark.slow
def test_rerun_skips_stored_runs_and_only_adds_missing(quick: dict) -> None:
    keys = [k for k in quick["keys"] if k.problem == "branin"]
    again = run_all(keys, QUICK, quick["storage"], jobs=1, log=False)
    assert all(r.startswith("skipped") for r in again), again
    storage = get_storage(quick["storage"])
    interrupted = RunKey("branin", keys[0].target, "tpe", 1)
    optuna.create_study(study_name=interrupted.study_name(QUICK), storage=storage)
    added = [*keys, RunKey("branin", keys[0].target, "random", 1), interrupted]
    results = run_all(added, QUICK, quick["storage"], jobs=1, log=False)
    assert sum(r.startswith("done") for r in results) == 2, results
    study = optuna.load_study(study_name=interrupted.study_name(QUICK), storage=storage)
    assert len(study.trials) == QUICK.budget and study.user_attrs["bench:complete"]


@pytest.mark.slow
def test_full_mode_pool_runs_in_parallel(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'pool.db'}"
    keys = plan(["branin"], ["random", "warm_tpe"], range(2), "1")
    protocol = Protocol(n_priors=2, prior_trials=5, budget=3)
    results = run_all(keys, protocol, storage, jobs=2, log=False)
    assert sum(r.startswith("done") for r in results) == 4, results
    again = run_all(keys, protocol, storage, jobs=2, log=False)
    assert all(r.startswith("skipped (stored)") for r in again)


@pytest.mark.slow
def test_report_is_produced(quick: dict, tmp_path: Path) -> None:
    out = tmp_path / "results"
    path = build_report(
        quick["storage"], out, "quick", cache_dir=quick["root"] / "cache", n_samples=200
    )
    text = path.read_text()
    headings = ("Normalized regret", "Average rank", "Trials to reach", "seconds per trial")
    for heading in (*headings, "Prior reuse floor", "| every prior trial |"):
        assert heading in text
    if SAMPLERS["meta_learn_tpe"].unavailable():
        assert "`meta_learn_tpe`:" in text and "Samplers skipped" in text
    for problem in _quick_problems():
        assert (out / f"quick-{problem}.png").stat().st_size > 1000
        assert f"## {problem}" in text
    assert "| metabo |" in text
    bounds_files = sorted(p.name for p in (quick["root"] / "cache").iterdir())
    assert "bounds-branin.json" in bounds_files


@pytest.mark.slow
def test_reuse_floor_is_what_warm_start_reaches_after_its_enqueued_trials(quick: dict) -> None:
    runs = load_runs(quick["storage"], ["branin"])
    attach_regret(runs, quick["root"] / "cache", 200)
    floors = reuse_floors(runs, quick["storage"])
    warm = [r for r in runs if r.sampler == "warm_tpe"]
    # Warm-start TPE enqueues every prior study's best configuration first.
    assert len(floors["incumbents"]) == len(warm) > 0
    for run in warm:
        key = (run.group, run.target, run.seed)
        after_enqueued = float(run.regret[QUICK.n_priors - 1])
        assert abs(floors["incumbents"][key] - after_enqueued) < 1e-9
        assert floors["all"][key] <= floors["incumbents"][key] + 1e-12


@pytest.mark.slow
def test_report_cli_runs_as_module(quick: dict, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks.report", "--storage", quick["storage"]]
    cmd += ["--out", str(tmp_path), "--name", "cli", "--problems", "branin"]
    cmd += ["--cache-dir", str(quick["root"] / "cache"), "--bound-samples", "200"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli.md").is_file() and (tmp_path / "cli-branin.png").is_file()


class _Toy(Problem):
    def __init__(self) -> None:
        super().__init__("toy")

    def tasks(self) -> list[str]:
        return ["a", "b", "c"]

    def suggest(self, trial: object) -> dict:
        return {"x": trial.suggest_float("x", -1, 1)}  # type: ignore[attr-defined]

    def evaluate(self, task: str, params: dict) -> float:
        return (params["x"] - {"a": 0.1, "b": 0.2, "c": 0.3}[task]) ** 2


def register_toy() -> None:
    """Plugin entry point used through ``METABO_BENCH_PLUGINS``."""
    register_problem("toy", _Toy)


def test_problem_plugin_hook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METABO_BENCH_PLUGINS", "benchmarks.test_harness:register_toy")
    assert "toy" in problem_names()
    keys = plan(["toy"], ["random", "warm_tpe"], range(1), "1")
    results = run_all(keys, Protocol(2, 4, "random", 3), f"sqlite:///{tmp_path / 't.db'}")
    assert sum(r.startswith("done") for r in results) == 2, results


def test_full_benchmark(pytestconfig: pytest.Config) -> None:
    """The full benchmark; collected only with ``--full`` or ``METABO_BENCH_FULL=1``."""
    assert full_mode(pytestconfig)
    from benchmarks import DEFAULT_STORAGE
    from benchmarks.runner import expand_problems
    from benchmarks.samplers import DEFAULT_SAMPLERS

    opt = lambda name: bench_option(pytestconfig, name)  # noqa: E731
    protocol = Protocol(
        int(opt("n-priors")), int(opt("prior-trials")), opt("prior-sampler"), int(opt("budget"))
    )
    storage = opt("storage") or DEFAULT_STORAGE
    samplers = opt("samplers").split(",") if opt("samplers") else list(DEFAULT_SAMPLERS)
    problems = expand_problems(opt("problems"))
    keys = plan(problems, samplers, range(int(opt("seeds"))), opt("targets") or None)
    jobs = int(opt("jobs") or os.cpu_count() or 1)
    results = run_all(keys, protocol, storage, jobs=jobs)
    assert not [r for r in results if r.startswith("FAILED")]
    build_report(storage, name=opt("report-name"), problems=problems, samplers=samplers)


@pytest.mark.slow
def test_digits_cnn_smoke_run(tmp_path: Path) -> None:
    """Real-training smoke run: the digits CNN objective of ``examples/`` (CPU, tiny)."""
    from benchmarks.problems.digits_cnn import DigitsCNN
    from benchmarks.problems.digits_cnn import examples_available

    reason = examples_available()
    if reason:
        pytest.skip(reason)
    register_problem("digits_cnn", lambda: DigitsCNN(max_epochs=1, max_train_samples=200))
    try:
        keys = plan(["digits_cnn"], ["random", "metabo"], range(1), None)
        protocol = Protocol(n_priors=1, prior_trials=2, budget=2)
        storage = f"sqlite:///{tmp_path / 'cnn.db'}"
        results = run_all(keys, protocol, storage, log=False)
        assert sum(r.startswith("done") for r in results) == 2, results
        path = build_report(storage, tmp_path, "cnn", cache_dir=tmp_path)
        assert "## digits_cnn" in path.read_text()
    finally:
        from benchmarks.problems import _CACHE
        from benchmarks.problems import _digits_cnn

        _CACHE.pop("digits_cnn", None)
        register_problem("digits_cnn", _digits_cnn)
