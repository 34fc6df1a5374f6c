"""Quick tests of the heterogeneous-history problems: priors tuned in another search space."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from benchmarks.problems import get_problem
from benchmarks.problems import HETERO
from benchmarks.problems.base import RandomTrial
from benchmarks.problems.hetero import HeldSpace
from benchmarks.problems.lcbench import lcbench_available
from benchmarks.problems.rbv2_rpart import rbv2_rpart_available
from benchmarks.report import build_report
from benchmarks.runner import expand_problems
from benchmarks.runner import get_storage
from benchmarks.runner import plan
from benchmarks.runner import Protocol
from benchmarks.runner import run_all
from benchmarks.runner import run_one
from benchmarks.runner import RunKey
from benchmarks.samplers import PriorContext
from benchmarks.samplers import SAMPLERS
from benchmarks.samplers import SamplerSpec


LC = ("batch_size", "learning_rate", "momentum", "weight_decay")
LC_PARAMS = frozenset((*LC, "num_layers", "max_units", "max_dropout"))
RPART_PARAMS = frozenset(("cp", "maxdepth", "minbucket", "minsplit"))
#: Problem -> (parameters the target tunes, parameters the priors tuned).
SPACES = {
    "hartmann3_grown": ({"x0", "x1", "x2"}, {"x0", "x1"}),
    "lcbench_grown_learning_rate": (LC_PARAMS, LC_PARAMS - {"learning_rate"}),
    "lcbench_grown_max_dropout": (LC_PARAMS, LC_PARAMS - {"max_dropout"}),
    "lcbench_shrunk": (LC_PARAMS - {"momentum"}, LC_PARAMS),
    "rbv2_rpart": (RPART_PARAMS, RPART_PARAMS),
    "rbv2_rpart_grown": (RPART_PARAMS, RPART_PARAMS - {"cp"}),
}
QUICK = Protocol(n_priors=2, prior_trials=6, prior_sampler="tpe", budget=3)
RUN_PROBLEMS = [
    "lcbench_grown_learning_rate",
    "lcbench_grown_max_dropout",
    "lcbench_shrunk",
    "rbv2_rpart",
]


def _skip_missing(name: str) -> None:
    if name.startswith("lcbench") and not lcbench_available():
        pytest.skip("LCBench surrogate data not found")
    if name.startswith("rbv2_rpart") and not rbv2_rpart_available():
        pytest.skip("rbv2_rpart surrogate data not found")


def _cond_space(params: dict[str, Any]) -> set[str]:
    active = {"momentum"} if params["optimizer"] == "sgd_momentum" else set()
    active |= {"weight_decay"} if params["regularize"] == "l2" else set()
    return set(LC_PARAMS - {"momentum", "weight_decay"}) | {"optimizer", "regularize"} | active


def _expected(name: str, params: dict[str, Any], prior: bool) -> set[str]:
    return _cond_space(params) if name == "lcbench_cond" else set(SPACES[name][prior])


@pytest.mark.parametrize("name", sorted([*SPACES, "lcbench_cond"]))
def test_spaces_round_trip(name: str) -> None:
    _skip_missing(name)
    problem = get_problem(name)
    task = problem.default_targets()[0]
    for prior, suggest in ((False, problem.suggest), (True, problem.prior_suggest)):
        for seed in range(4):
            trial = RandomTrial(np.random.default_rng(seed))
            suggest(trial)
            assert set(trial.params) == _expected(name, trial.params, prior)
            assert np.isfinite(problem.evaluate(task, trial.params))
            target = problem.prior_to_target(trial.params) if prior else trial.params
            assert not set(target) & set(problem.fixed_params())
            assert np.isfinite(problem.evaluate(task, target))
        objective = problem.prior_objective(task) if prior else problem.objective(task)
        study = optuna.create_study(direction=problem.direction)
        study.optimize(objective, n_trials=3)
        for t in study.trials:
            assert t.value is not None and np.isfinite(t.value)
            assert set(t.params) == _expected(name, t.params, prior)


def test_held_values_are_filled_in() -> None:
    problem = get_problem("hartmann3_grown")
    assert isinstance(problem, HeldSpace)
    assert problem.prior_defaults() == {"x2": 0.5} and problem.fixed_params() == {}
    prior = {"x0": 0.2, "x1": 0.7}
    assert problem.prior_to_target(prior) == {"x0": 0.2, "x1": 0.7, "x2": 0.5}
    assert problem.evaluate("t03", prior) == problem.inner.evaluate("t03", {**prior, "x2": 0.5})
    assert problem.known_optimum("t03") == get_problem("hartmann3").known_optimum("t03")


def test_hetero_selection_and_informed_sampler_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    assert expand_problems("hetero") == list(HETERO)
    import optuna_metabo

    calls: list[dict[str, Any]] = []

    def fake(names: list[str], **kwargs: Any) -> optuna.samplers.BaseSampler:
        calls.append({"names": names, **kwargs})
        return optuna.samplers.RandomSampler()

    monkeypatch.setattr(optuna_metabo, "MetaBOSampler", fake)
    context = PriorContext(["p"], "sqlite://", "maximize", {"lr": 1e-3}, {})
    SAMPLERS["metabo_informed"].factory(3, context)
    SAMPLERS["metabo"].factory(3, context)
    assert calls[0] == {
        "names": ["p"],
        "prior_storage": "sqlite://",
        "seed": 3,
        "prior_defaults": {"lr": 1e-3},
        "fixed_params": None,
    }
    assert "prior_defaults" not in calls[1] and "fixed_params" not in calls[1]


def test_runner_gives_the_held_values_to_samplers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[PriorContext] = []

    def factory(seed: int, priors: PriorContext) -> optuna.samplers.BaseSampler:
        seen.append(priors)
        return optuna.samplers.RandomSampler(seed=seed)

    monkeypatch.setitem(SAMPLERS, "record", SamplerSpec(factory, uses_priors=True))
    key = RunKey("hartmann3_grown", "t00", "record", 0)
    assert run_one(key, QUICK, f"sqlite:///{tmp_path / 'r.db'}").startswith("done")
    assert seen[0].prior_defaults == {"x2": 0.5} and seen[0].fixed_params == {}
    assert len(seen[0].studies()) == QUICK.n_priors


@pytest.fixture(scope="module")
def hetero_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Quick ``warm_tpe`` and ``random`` runs on the surrogate problems that are present."""
    names = [n for n in RUN_PROBLEMS if lcbench_available() or not n.startswith("lcbench")]
    names = [n for n in names if rbv2_rpart_available() or not n.startswith("rbv2")]
    if not names:
        pytest.skip("YAHPO surrogate data not found")
    root = tmp_path_factory.mktemp("hetero")
    storage = f"sqlite:///{root / 'hetero.db'}"
    keys = plan(names, ["random", "warm_tpe"], range(1), "1")
    results = run_all(keys, QUICK, storage, jobs=1, log=False)
    return {"root": root, "storage": storage, "keys": keys, "results": results}


@pytest.mark.slow
def test_quick_runs_keep_each_space(hetero_runs: dict[str, Any]) -> None:
    assert not [r for r in hetero_runs["results"] if r.startswith("FAILED")]
    storage = get_storage(hetero_runs["storage"])
    for key in hetero_runs["keys"]:
        study = optuna.load_study(study_name=key.study_name(QUICK), storage=storage)
        target_space, prior_space = SPACES[key.problem]
        assert len(study.trials) == QUICK.budget
        assert all(set(t.params) == target_space for t in study.trials)
        if key.sampler != "warm_tpe":
            continue
        names = study.user_attrs["bench:prior_studies"]
        priors = [optuna.load_study(study_name=n, storage=storage) for n in names]
        assert len(priors) == QUICK.n_priors
        for prior in priors:
            assert len(prior.trials) == QUICK.prior_trials
            assert all(set(t.params) == prior_space for t in prior.trials)
            best = {k: v for k, v in prior.best_params.items() if k in target_space}
            assert any(best.items() <= t.params.items() for t in study.trials[: len(priors)])


@pytest.mark.slow
def test_report_maps_prior_configurations(hetero_runs: dict[str, Any]) -> None:
    root = hetero_runs["root"]
    path = build_report(hetero_runs["storage"], root / "out", "h", cache_dir=root, n_samples=200)
    text = path.read_text()
    for problem in {k.problem for k in hetero_runs["keys"]}:
        section = text.split(f"## {problem}\n", 1)[1].split("\n## ", 1)[0]
        assert "| warm_tpe |" in section and "| every prior trial | 1 |" in section
