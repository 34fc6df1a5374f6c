"""Run multi-objective and constrained benchmark runs (issue 14) into Optuna studies.

The protocol and storage layout are those of :mod:`benchmarks.runner` (leave one task out,
``--n-priors`` prior tasks x ``--prior-trials`` trials, runs written when complete and marked
``bench:complete``, so a re-run only does what is missing), with these differences:

- problems come from :data:`benchmarks.problems.multi_objective.MO_PROBLEMS` and samplers from
  :data:`benchmarks.mo_samplers.MO_SAMPLERS`;
- studies have the problem's directions and metric names (``study.set_metric_names``); prior
  studies are made by ``TPESampler`` on all objectives (MOTPE) with the problem's
  ``constraints_func``, so their trials store constraint values;
- run studies carry ``bench:role = "mo_run"`` (the single-objective report ignores them).

CLI: ``python -m benchmarks.mo_runner --help``; the report (``python -m benchmarks.mo_report``)
runs what is missing too.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from collections.abc import Sequence
import os
import sys
import warnings

import optuna
from optuna.storages import BaseStorage

from benchmarks import DEFAULT_STORAGE
from benchmarks.mo_samplers import MO_DEFAULT_SAMPLERS
from benchmarks.mo_samplers import MO_SAMPLERS
from benchmarks.mo_samplers import MOPriorContext
from benchmarks.problems.multi_objective import constraints_from_user_attrs
from benchmarks.problems.multi_objective import get_mo_problem
from benchmarks.problems.multi_objective import MOProblem
from benchmarks.runner import _is_complete
from benchmarks.runner import _stable_seed
from benchmarks.runner import _write_study
from benchmarks.runner import execute_runs
from benchmarks.runner import finish_run
from benchmarks.runner import get_storage
from benchmarks.runner import NO_PRUNING
from benchmarks.runner import prepare_run
from benchmarks.runner import prior_name
from benchmarks.runner import Protocol
from benchmarks.runner import resolve_targets
from benchmarks.runner import RunKey
from benchmarks.runner import STORAGE_ENV
from benchmarks.samplers import TimedSampler


ROLE = "mo_run"


def _create_study(problem: MOProblem, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    study = optuna.create_study(directions=problem.directions, sampler=sampler, pruner=NO_PRUNING)
    study.set_metric_names(problem.metric_names)
    return study


def ensure_mo_prior(
    problem_name: str, task: str, seed: int, protocol: Protocol, storage: str | BaseStorage
) -> str:
    """Create the prior study of (task, seed) unless it is stored; return its name.

    The prior sampler is ``TPESampler`` (``RandomSampler`` with ``--prior-sampler random``),
    seeded per task and seed, with the problem's ``constraints_func`` when it has constraints.

    Args:
        problem_name: Problem name.
        task: Prior task id.
        seed: Seed.
        protocol: Protocol knobs.
        storage: Benchmark storage.
    """
    storage = get_storage(storage)
    name = prior_name(problem_name, task, seed, protocol)
    if _is_complete(storage, name):
        return name
    problem = get_mo_problem(problem_name)
    pseed = _stable_seed(problem_name, task, seed, "prior")
    sampler: optuna.samplers.BaseSampler
    if protocol.prior_sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=pseed)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # constraints_func in Optuna 5
            func = constraints_from_user_attrs if problem.n_constraints else None
            sampler = optuna.samplers.TPESampler(seed=pseed, constraints_func=func)
    study = _create_study(problem, sampler)
    study.optimize(problem.mo_objective(task), n_trials=protocol.prior_trials)
    attrs: dict[str, object] = {"bench:role": "prior", "bench:problem": problem_name}
    attrs |= {
        "bench:task": task,
        "bench:seed": seed,
        "bench:prior_sampler": protocol.prior_sampler,
    }
    _write_study(storage, name, study, attrs)
    return name


def run_mo_one(key: RunKey, protocol: Protocol, storage: str | BaseStorage) -> str:
    """Run one multi-objective or constrained run unless it is stored; return a status line.

    Args:
        key: Which run.
        protocol: Protocol knobs.
        storage: Benchmark storage (URL or object).
    """
    run = prepare_run(key, protocol, storage, MO_SAMPLERS, get_mo_problem, ensure_mo_prior)
    if isinstance(run, str):
        return run
    problem = run.problem
    priors = MOPriorContext(
        run.prior_names,
        run.storage,
        problem.directions[0],
        directions=list(problem.directions),
        metric_names=problem.metric_names,
        constraints_func=constraints_from_user_attrs if problem.n_constraints else None,
    )
    study = _create_study(problem, TimedSampler(run.spec.factory(key.seed, priors)))
    if run.spec.setup is not None:
        run.spec.setup(study, priors)
    study.optimize(problem.mo_objective(key.target), n_trials=protocol.budget)
    attrs: dict[str, object] = {"bench:role": ROLE, "bench:directions": list(problem.directions)}
    attrs["bench:n_constraints"] = problem.n_constraints
    return finish_run(run, key, protocol, study, attrs)


def _safe_run(args: tuple[RunKey, Protocol, str]) -> str:
    try:
        return run_mo_one(*args)
    except Exception as exc:  # one broken run must not stop a full benchmark
        return f"FAILED {args[0].study_name(args[1])}: {type(exc).__name__}: {exc}"


def _safe_prior(args: tuple[str, str, int, Protocol, str]) -> str:
    try:
        return f"prior {ensure_mo_prior(*args)}"
    except Exception as exc:
        return f"FAILED prior {args[:3]}: {type(exc).__name__}: {exc}"


def mo_plan(
    problems: Iterable[str],
    samplers: Iterable[str],
    seeds: Iterable[int],
    targets: str | Sequence[str] | None = None,
) -> list[RunKey]:
    """List the runs of a benchmark (see :func:`benchmarks.runner.plan`).

    Args:
        problems: Problem names (keys of ``MO_PROBLEMS``).
        samplers: Sampler names (keys of ``MO_SAMPLERS``).
        seeds: Seeds.
        targets: ``None`` (default targets), ``"all"``, ``"N"`` or ids.
    """
    keys = []
    samplers = list(samplers)
    for p in problems:
        for t in resolve_targets(get_mo_problem(p), targets):
            keys += [RunKey(p, t, s, seed) for seed in seeds for s in samplers]
    return keys


def run_mo_all(
    keys: Sequence[RunKey],
    protocol: Protocol,
    storage: str = DEFAULT_STORAGE,
    jobs: int = 1,
    log: bool = True,
) -> list[str]:
    """Run every missing run of ``keys`` (priors first) with ``jobs`` processes.

    Args:
        keys: Runs, e.g. from :func:`mo_plan`.
        protocol: Protocol knobs.
        storage: Storage URL.
        jobs: Worker processes; 1 runs in this process.
        log: Print one line per finished run.
    """
    return execute_runs(
        keys, protocol, storage, jobs, log, MO_SAMPLERS, get_mo_problem, _safe_prior, _safe_run
    )


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``mo_runner`` and ``mo_report``.

    Args:
        parser: The parser to extend.
    """
    parser.add_argument("--problems", default="lcbench_mo,rbv2_rpart_mo,lcbench_constrained")
    parser.add_argument("--samplers", default=",".join(MO_DEFAULT_SAMPLERS))
    parser.add_argument("--targets", default=None, help="N (first N), 'all', or comma ids")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--n-priors", type=int, default=10)
    parser.add_argument("--prior-trials", type=int, default=50)
    parser.add_argument("--prior-sampler", choices=("tpe", "random"), default="tpe")
    parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mo_runner", description=__doc__)
    add_protocol_arguments(parser)
    args = parser.parse_args(argv)
    protocol = Protocol(args.n_priors, args.prior_trials, args.prior_sampler, args.budget)
    keys = mo_plan(
        args.problems.split(","), args.samplers.split(","), range(args.seeds), args.targets
    )
    results = run_mo_all(keys, protocol, args.storage, args.jobs)
    failed = [r for r in results if r.startswith("FAILED")]
    done = sum(r.startswith("done") for r in results)
    print(
        f"[bench] {len(keys)} runs planned, {done} run now, {len(failed)} failed", file=sys.stderr
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
