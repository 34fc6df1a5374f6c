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
from collections.abc import Sequence
import os

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
from benchmarks.runner import finish_run
from benchmarks.runner import get_storage
from benchmarks.runner import NO_PRUNING
from benchmarks.runner import prepare_run
from benchmarks.runner import prior_name
from benchmarks.runner import prior_sampler
from benchmarks.runner import Protocol
from benchmarks.runner import RunKey
from benchmarks.runner import RunKind
from benchmarks.runner import STORAGE_ENV
from benchmarks.runner import summarize
from benchmarks.runner import write_prior
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
    func = constraints_from_user_attrs if problem.n_constraints else None
    study = _create_study(problem, prior_sampler(problem_name, task, seed, protocol, func))
    study.optimize(problem.mo_objective(task), n_trials=protocol.prior_trials)
    write_prior(storage, name, study, problem_name, task, seed, protocol)
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


#: The multi-objective and constrained runs: :func:`mo_plan` lists them (``samplers`` are keys
#: of ``MO_SAMPLERS``), :func:`run_mo_all` runs the missing ones.
MO_RUNS = RunKind(MO_SAMPLERS, get_mo_problem, ensure_mo_prior, run_mo_one)
mo_plan = MO_RUNS.plan
run_mo_all = MO_RUNS.run_all


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
    return summarize(keys, run_mo_all(keys, protocol, args.storage, args.jobs))


if __name__ == "__main__":
    raise SystemExit(main())
