"""Run the learning-curve and failure benchmarks (issue 24) into Optuna studies.

The protocol and storage layout are those of :mod:`benchmarks.runner` (leave one task out,
``--n-priors`` prior tasks x ``--prior-trials`` trials, runs written when complete and marked
``bench:complete``, so a re-run only does what is missing), with these differences:

- problems come from :data:`benchmarks.problems.learning_curves.LC_PROBLEMS` and arms (a
  sampler with a pruner) from :data:`benchmarks.lc_samplers.ARMS`;
- the budget is in the problem's cost unit: a run trains trials until the epochs its trials
  trained (``lcbench_lc``, user attribute ``lc:epochs``) or its trials (``lcbench_fail*``)
  reach ``--budget``; the trial that crosses it finishes, and the report scores each
  checkpoint only with the trials that finished by then;
- prior studies ran under the problem's prior pruner (``HyperbandPruner`` on ``lcbench_lc``)
  and, like the runs, with ``catch=(RuntimeError,)`` on the failure problems;
- in-memory studies are named after the prior study, or ``<problem>-<target>-s<seed>`` for a
  run, because ``HyperbandPruner`` assigns brackets by a hash of the study name: brackets are
  reproducible, and every arm of a (target, seed) gets the same ones;
- run studies carry ``bench:role`` ``"lc_run"`` or ``"fail_run"`` (the single-objective report
  ignores them) and ``bench:pruner``.

CLI::

    python -m benchmarks.lc_runner --protocol curves --jobs 1    # 8 targets x 3 seeds
    python -m benchmarks.lc_runner --protocol failures --jobs 1

Report: ``python -m benchmarks.lc_report``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
import os

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from benchmarks import DEFAULT_STORAGE
from benchmarks.lc_samplers import ARMS
from benchmarks.lc_samplers import CURVE_ARMS
from benchmarks.lc_samplers import FAILURE_ARMS
from benchmarks.problems.lcbench import MAX_EPOCH
from benchmarks.problems.learning_curves import get_lc_problem
from benchmarks.problems.learning_curves import LCProblem
from benchmarks.runner import _is_complete
from benchmarks.runner import finish_run
from benchmarks.runner import get_storage
from benchmarks.runner import prepare_run
from benchmarks.runner import prior_name
from benchmarks.runner import prior_sampler
from benchmarks.runner import Protocol
from benchmarks.runner import RunKey
from benchmarks.runner import RunKind
from benchmarks.runner import STORAGE_ENV
from benchmarks.runner import summarize
from benchmarks.runner import write_prior
from benchmarks.samplers import PriorContext
from benchmarks.samplers import TimedSampler


#: Full training of one LCBench configuration, in epochs.
FULL_TRAINING = MAX_EPOCH
#: Each protocol: its problems, arms and budget (in the problems' cost unit).
PROTOCOLS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "curves": (("lcbench_lc",), CURVE_ARMS, 20 * FULL_TRAINING),
    "failures": (("lcbench_fail", "lcbench_fail_clean"), FAILURE_ARMS, 20),
}


@contextmanager
def _quiet_failures(problem: LCProblem) -> Iterator[None]:
    """Silence Optuna's per-trial warning (with traceback) for the failures a problem makes."""
    verbosity = optuna.logging.get_verbosity()
    if problem.catch:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def ensure_lc_prior(
    problem_name: str, task: str, seed: int, protocol: Protocol, storage: str | BaseStorage
) -> str:
    """Create the prior study of (task, seed) unless it is stored; return its name.

    The prior sampler is ``TPESampler`` (``RandomSampler`` with ``--prior-sampler random``),
    seeded per task and seed, under the problem's prior pruner.

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
    problem = get_lc_problem(problem_name)
    study = optuna.create_study(
        study_name=name,
        direction=problem.direction,
        sampler=prior_sampler(problem_name, task, seed, protocol),
        pruner=problem.prior_pruner(),
    )
    with _quiet_failures(problem):
        study.optimize(
            problem.prior_objective(task), n_trials=protocol.prior_trials, catch=problem.catch
        )
    write_prior(storage, name, study, problem_name, task, seed, protocol)
    return name


class BudgetStop:
    """Study callback: stop once the finished trials' cost reaches the budget.

    Args:
        problem: Gives each trial's cost.
        budget: Budget in the problem's cost unit.
    """

    def __init__(self, problem: LCProblem, budget: float) -> None:
        self._problem = problem
        self._budget = budget
        self.spent = 0.0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Add ``trial``'s cost; stop ``study`` when the budget is spent."""
        self.spent += self._problem.cost(trial)
        if self.spent >= self._budget:
            study.stop()


def run_lc_one(key: RunKey, protocol: Protocol, storage: str | BaseStorage) -> str:
    """Run one learning-curve or failure run unless it is stored; return a status line.

    Args:
        key: Which run (``key.sampler`` names an arm).
        protocol: Protocol knobs; ``budget`` is in the problem's cost unit.
        storage: Benchmark storage (URL or object).
    """
    run = prepare_run(key, protocol, storage, ARMS, get_lc_problem, ensure_lc_prior)
    if isinstance(run, str):
        return run
    problem, arm = run.problem, run.spec
    priors = PriorContext(run.prior_names, run.storage, problem.direction)
    study = optuna.create_study(
        study_name=f"{key.problem}-{key.target}-s{key.seed}",
        direction=problem.direction,
        sampler=TimedSampler(arm.factory(key.seed, priors)),
        pruner=arm.make_pruner(),
    )
    if arm.setup is not None:
        arm.setup(study, priors)
    stop = BudgetStop(problem, protocol.budget)
    with _quiet_failures(problem):
        # Every trial costs at least one unit, so ``budget`` trials always spend the budget.
        study.optimize(
            problem.objective(key.target),
            n_trials=protocol.budget,
            callbacks=[stop],
            catch=problem.catch,
        )
    attrs: dict[str, object] = {"bench:role": problem.role, "bench:direction": problem.direction}
    attrs |= {"bench:pruner": arm.pruner or "none", "bench:cost_unit": problem.cost_unit}
    attrs["bench:spent"] = stop.spent
    return finish_run(run, key, protocol, study, attrs)


#: The learning-curve and failure runs: :func:`lc_plan` lists them, :func:`run_lc_all` runs
#: the missing ones.
LC_RUNS = RunKind(ARMS, get_lc_problem, ensure_lc_prior, run_lc_one)
run_lc_all = LC_RUNS.run_all


def lc_plan(
    problems: Iterable[str],
    arms: Iterable[str],
    seeds: Iterable[int],
    targets: str | Sequence[str] | None = None,
) -> list[RunKey]:
    """List the runs of a benchmark (see :func:`benchmarks.runner.plan`).

    Args:
        problems: Problem names (keys of ``LC_PROBLEMS``).
        arms: Arm names (keys of ``ARMS``).
        seeds: Seeds.
        targets: ``None`` (default targets), ``"all"``, ``"N"`` or ids.
    """
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise KeyError(f"Unknown arms {unknown}; known: {sorted(ARMS)}")
    return LC_RUNS.plan(problems, arms, seeds, targets)


def protocol_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options shared by ``lc_runner`` and ``lc_report`` (see :func:`parse_protocol`).

    Args:
        prog: Program name.
        description: Help text.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="curves")
    parser.add_argument("--problems", default=None, help="comma list (default: the protocol's)")
    parser.add_argument("--samplers", default=None, help="comma list of arms")
    parser.add_argument("--targets", default=None, help="N (first N), 'all', or comma ids")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=None, help="epochs or trials")
    parser.add_argument("--n-priors", type=int, default=10)
    parser.add_argument("--prior-trials", type=int, default=50)
    parser.add_argument("--prior-sampler", choices=("tpe", "random"), default="tpe")
    parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE))
    parser.add_argument("--jobs", type=int, default=1)
    return parser


def parse_protocol(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse the options of :func:`protocol_parser`: ``--problems`` and ``--budget`` default
    to those of ``--protocol``; ``--samplers`` becomes a list, or ``None`` when not given.

    Args:
        parser: What :func:`protocol_parser` returns (possibly with more options).
        argv: Arguments (defaults to ``sys.argv``).
    """
    args = parser.parse_args(argv)
    problems, _, budget = PROTOCOLS[args.protocol]
    args.problems = args.problems.split(",") if args.problems else list(problems)
    args.samplers = args.samplers.split(",") if args.samplers else None
    args.budget = args.budget or budget
    return args


def protocol_of(args: argparse.Namespace) -> Protocol:
    """The :class:`Protocol` of parsed options.

    Args:
        args: What :func:`parse_protocol` returns.
    """
    return Protocol(args.n_priors, args.prior_trials, args.prior_sampler, args.budget)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv``).
    """
    args = parse_protocol(protocol_parser("python -m benchmarks.lc_runner", __doc__ or ""), argv)
    arms = args.samplers or list(PROTOCOLS[args.protocol][1])
    keys = lc_plan(args.problems, arms, range(args.seeds), args.targets)
    return summarize(keys, run_lc_all(keys, protocol_of(args), args.storage, args.jobs))


if __name__ == "__main__":
    raise SystemExit(main())
