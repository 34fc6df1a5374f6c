"""Run (problem, target, sampler, seed) benchmark runs into Optuna studies.

Every run is a study named ``run-<problem>-<target>-<sampler>-s<seed>-<protocol>`` whose user
attributes (``bench:*``) record problem, target, sampler, seed and protocol. A run is optimized
in memory and then written to the benchmark storage in one go, followed by
``bench:complete=True``, so an interrupted run is simply redone and completed runs are skipped:
re-running a command (or adding a sampler to it) only runs what is missing. Prior studies
``prior-<problem>-<task>-s<seed>-<sampler><trials>`` live in the same storage and are shared by
all samplers and targets of a seed. CLI: ``python -m benchmarks.runner --help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from functools import partial
import multiprocessing
import os
from pathlib import Path
import sys
import time
from typing import Any
import warnings
import zlib

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from benchmarks import DEFAULT_STORAGE
from benchmarks.problems import get_problem
from benchmarks.problems import Problem
from benchmarks.problems import problem_names
from benchmarks.problems.base import MidpointTrial
from benchmarks.samplers import DEFAULT_SAMPLERS
from benchmarks.samplers import PriorContext
from benchmarks.samplers import SAMPLERS
from benchmarks.samplers import TimedSampler


COMPLETE = "bench:complete"
STORAGE_ENV = "METABO_BENCH_STORAGE"
NO_PRUNING = optuna.pruners.NopPruner()


@dataclass(frozen=True)
class Protocol:
    """Knobs of the leave-one-task-out transfer protocol.

    Args:
        n_priors: Number of prior tasks drawn per (target, seed).
        prior_trials: Trials per prior study.
        prior_sampler: ``"tpe"`` or ``"random"``, the sampler that made the priors.
        budget: Trials on the target task.
    """

    n_priors: int = 10
    prior_trials: int = 50
    prior_sampler: str = "tpe"
    budget: int = 40

    @property
    def tag(self) -> str:
        """Short identifier used in study names, e.g. ``k10-p50tpe-b40``."""
        return f"k{self.n_priors}-p{self.prior_trials}{self.prior_sampler}-b{self.budget}"


@dataclass(frozen=True)
class RunKey:
    """Identifies one run.

    Args:
        problem: Problem name.
        target: Target task id.
        sampler: Sampler registry name.
        seed: Seed (drives prior task choice, prior studies and the sampler).
    """

    problem: str
    target: str
    sampler: str
    seed: int

    def study_name(self, protocol: Protocol) -> str:
        """Name of the run's study under ``protocol``."""
        return f"run-{self.problem}-{self.target}-{self.sampler}-s{self.seed}-{protocol.tag}"


def get_storage(url: str | BaseStorage) -> BaseStorage:
    """Build a storage from a URL; SQLite gets a long lock timeout and its folder created.

    Args:
        url: Any Optuna storage URL (``sqlite:///``, ``postgresql://``, ...), a journal file
            path ending in ``.log``/``.jsonl``, or a storage object.
    """
    if isinstance(url, BaseStorage):
        return url
    if url not in _STORAGES:
        _STORAGES[url] = _make_storage(url)
    return _STORAGES[url]


_STORAGES: dict[str, BaseStorage] = {}


def _make_storage(url: str) -> BaseStorage:
    if url.endswith((".log", ".jsonl")) and "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 300}})
    return optuna.storages.get_storage(url)


def _stable_seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode()) % (2**31 - 1)


def prior_tasks(problem: Problem, target: str, seed: int, protocol: Protocol) -> list[str]:
    """Draw the prior tasks of (target, seed): ``n_priors`` tasks from the prior pool.

    Args:
        problem: The problem.
        target: Target task id (never among the priors).
        seed: Seed of the draw.
        protocol: Protocol knobs.
    """
    pool = problem.prior_pool(target)
    rng = np.random.default_rng(_stable_seed(problem.name, target, seed))
    idx = sorted(rng.choice(len(pool), size=min(protocol.n_priors, len(pool)), replace=False))
    return [pool[i] for i in idx]


def prior_name(problem: str, task: str, seed: int, protocol: Protocol) -> str:
    """Name of the prior study of ``task`` for ``seed`` (shared by all targets and samplers).

    Args:
        problem: Problem name.
        task: Prior task id.
        seed: Seed.
        protocol: Protocol knobs (prior sampler and trials are part of the name).
    """
    return f"prior-{problem}-{task}-s{seed}-{protocol.prior_sampler}{protocol.prior_trials}"


def _complete_names(storage: BaseStorage) -> set[str]:
    return {
        s.study_name
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if s.user_attrs.get(COMPLETE)
    }


def _is_complete(storage: BaseStorage, name: str) -> bool:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return bool(storage.get_study_user_attrs(study_id).get(COMPLETE))


def _write_study(
    storage: BaseStorage, name: str, source: optuna.Study, attrs: dict[str, object]
) -> None:
    """Copy an in-memory study into ``storage`` under ``name``; mark it complete last."""
    if name in optuna.get_all_study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)  # left by an interrupted run
    dst = optuna.create_study(study_name=name, storage=storage, directions=source.directions)
    if source.metric_names is not None:
        dst.set_metric_names(source.metric_names)
    for key, value in attrs.items():
        dst.set_user_attr(key, value)
    dst.add_trials(source.trials)
    dst.set_user_attr(COMPLETE, True)


def ensure_prior(
    problem_name: str, task: str, seed: int, protocol: Protocol, storage: str | BaseStorage
) -> str:
    """Create the prior study of (task, seed) unless it is already stored; return its name.

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
    problem = get_problem(problem_name)
    sampler = prior_sampler(problem_name, task, seed, protocol)
    study = optuna.create_study(direction=problem.direction, sampler=sampler, pruner=NO_PRUNING)
    study.optimize(problem.prior_objective(task), n_trials=protocol.prior_trials)
    write_prior(storage, name, study, problem_name, task, seed, protocol)
    return name


def prior_sampler(
    problem_name: str,
    task: str,
    seed: int,
    protocol: Protocol,
    constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler of a prior study: ``TPESampler`` (``RandomSampler`` with ``--prior-sampler
    random``), seeded per problem, task and seed.

    Args:
        problem_name: Problem name.
        task: Prior task id.
        seed: Seed.
        protocol: Protocol knobs.
        constraints_func: ``TPESampler``'s ``constraints_func``, for constrained problems.
    """
    pseed = _stable_seed(problem_name, task, seed, "prior")
    if protocol.prior_sampler == "random":
        return optuna.samplers.RandomSampler(seed=pseed)
    if constraints_func is None:
        return optuna.samplers.TPESampler(seed=pseed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # constraints_func in Optuna 5
        return optuna.samplers.TPESampler(seed=pseed, constraints_func=constraints_func)


def write_prior(
    storage: BaseStorage,
    name: str,
    study: optuna.Study,
    problem_name: str,
    task: str,
    seed: int,
    protocol: Protocol,
) -> None:
    """Store a finished prior study under ``name`` with the attributes every prior has.

    Args:
        storage: The benchmark storage.
        name: The prior study's name.
        study: The finished in-memory study.
        problem_name: Problem name.
        task: Prior task id.
        seed: Seed.
        protocol: Protocol knobs.
    """
    attrs: dict[str, object] = {"bench:role": "prior", "bench:problem": problem_name}
    attrs["bench:task"] = task
    attrs |= {"bench:seed": seed, "bench:prior_sampler": protocol.prior_sampler}
    _write_study(storage, name, study, attrs)


@dataclass
class PreparedRun:
    """A run that is not stored yet, with its priors in the storage.

    Attributes:
        storage: The benchmark storage.
        name: The run's study name.
        spec: The sampler's registry entry.
        problem: The problem.
        prior_names: The prior studies' names.
        start: ``time.perf_counter()`` when the run started.
    """

    storage: BaseStorage
    name: str
    spec: Any
    problem: Any
    prior_names: list[str]
    start: float


def prepare_run(
    key: RunKey,
    protocol: Protocol,
    storage: str | BaseStorage,
    samplers: Mapping[str, Any],
    problem_of: Callable[[str], Any],
    ensure: Callable[[str, str, int, Protocol, BaseStorage], str],
) -> PreparedRun | str:
    """Makes the priors of a run; a status line instead when it is stored or its sampler is
    unavailable. Shared by the single- and multi-objective runners.

    Args:
        key: Which run.
        protocol: Protocol knobs.
        storage: Benchmark storage (URL or object).
        samplers: The sampler registry.
        problem_of: Problem by name.
        ensure: Makes one prior study unless it is stored.
    """
    storage = get_storage(storage)
    name = key.study_name(protocol)
    if _is_complete(storage, name):
        return f"skipped (stored) {name}"
    spec = samplers[key.sampler]
    reason = spec.unavailable()
    if reason:
        return f"skipped (unavailable) {name}: {reason}"
    problem = problem_of(key.problem)
    tasks = prior_tasks(problem, key.target, key.seed, protocol)
    if spec.uses_priors:
        for task in tasks:
            ensure(key.problem, task, key.seed, protocol, storage)
    names = [prior_name(key.problem, t, key.seed, protocol) for t in tasks]
    return PreparedRun(storage, name, spec, problem, names, time.perf_counter())


def finish_run(
    run: PreparedRun,
    key: RunKey,
    protocol: Protocol,
    study: optuna.Study,
    attrs: dict[str, object],
) -> str:
    """Stores a finished run with the attributes every run has, plus ``attrs``.

    Args:
        run: The prepared run.
        key: Which run.
        protocol: Protocol knobs.
        study: The finished run.
        attrs: Attributes of this kind of run (its ``bench:role`` among them).
    """
    attrs = {f"bench:{k}": v for k, v in asdict(key).items()} | attrs
    attrs |= {"bench:family": run.problem.family, "bench:protocol": protocol.tag}
    attrs |= {f"bench:{k}": v for k, v in asdict(protocol).items()}
    attrs |= {"bench:prior_studies": run.prior_names if run.spec.uses_priors else []}
    attrs |= {"bench:optuna": optuna.__version__}
    attrs["bench:wall_seconds"] = time.perf_counter() - run.start
    _write_study(run.storage, run.name, study, attrs)
    return f"done {run.name} ({attrs['bench:wall_seconds']:.1f}s)"


def run_one(key: RunKey, protocol: Protocol, storage: str | BaseStorage) -> str:
    """Run one benchmark run unless it is already stored; return a status line.

    Args:
        key: Which run.
        protocol: Protocol knobs.
        storage: Benchmark storage (URL or object).
    """
    run = prepare_run(key, protocol, storage, SAMPLERS, get_problem, ensure_prior)
    if isinstance(run, str):
        return run
    problem = run.problem
    priors = PriorContext(
        run.prior_names,
        run.storage,
        problem.direction,
        problem.prior_defaults(),
        problem.fixed_params(),
        held_midpoints(problem),
    )
    sampler = TimedSampler(run.spec.factory(key.seed, priors))
    study = optuna.create_study(direction=problem.direction, sampler=sampler, pruner=NO_PRUNING)
    if run.spec.setup is not None:
        run.spec.setup(study, priors)
    study.optimize(problem.objective(key.target), n_trials=protocol.budget)
    return finish_run(
        run, key, protocol, study, {"bench:role": "run", "bench:direction": problem.direction}
    )


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _safe_run(
    run_one: Callable[[RunKey, Protocol, str], str], args: tuple[RunKey, Protocol, str]
) -> str:
    try:
        return run_one(*args)
    except Exception as exc:  # one broken run must not stop a full benchmark
        return f"FAILED {args[0].study_name(args[1])}: {type(exc).__name__}: {exc}"


def _safe_prior(
    ensure: Callable[[str, str, int, Protocol, str], str],
    args: tuple[str, str, int, Protocol, str],
) -> str:
    try:
        return f"prior {ensure(*args)}"
    except Exception as exc:
        return f"FAILED prior {args[:3]}: {type(exc).__name__}: {exc}"


def held_midpoints(problem: Problem) -> dict[str, Any]:
    """The middle of the target's range for each parameter the priors held (a naive guess).

    Args:
        problem: The problem.
    """
    held = problem.prior_defaults()
    if not held:  # nothing held; some problems (digits_cnn) define no ``suggest`` either
        return {}
    trial = MidpointTrial()
    problem.suggest(trial)
    return {k: v for k, v in trial.params.items() if k in held}


def resolve_targets(problem: Problem, targets: str | Sequence[str] | None) -> list[str]:
    """Pick targets: ``None`` means defaults, ``"all"`` all, ``"N"`` the first N defaults.

    Args:
        problem: The problem.
        targets: Selection; a list keeps the ids that belong to ``problem``.
    """
    if targets is None:
        return problem.default_targets()
    if isinstance(targets, str):
        if targets == "all":
            return problem.all_targets()
        if targets.isdigit():
            return problem.default_targets()[: int(targets)]
        targets = targets.split(",")
    return [t for t in targets if t in problem.all_targets()]


@dataclass(frozen=True)
class RunKind:
    """One kind of benchmark run (single-objective, multi-objective, learning-curve): plans its
    runs and runs the missing ones.

    Args:
        samplers: The sampler registry of the runs.
        problem_of: Problem by name.
        ensure: Makes one prior study unless it is stored (top-level, so that worker processes
            can run it).
        run_one: Makes one run unless it is stored (top-level too).
    """

    samplers: Mapping[str, Any]
    problem_of: Callable[[str], Any]
    ensure: Callable[[str, str, int, Protocol, str], str]
    run_one: Callable[[RunKey, Protocol, str], str]

    def plan(
        self,
        problems: Iterable[str],
        samplers: Iterable[str],
        seeds: Iterable[int],
        targets: str | Sequence[str] | None = None,
    ) -> list[RunKey]:
        """List the runs of a benchmark.

        Args:
            problems: Problem names.
            samplers: Sampler names (keys of the registry).
            seeds: Seeds.
            targets: Target selection, see :func:`resolve_targets`.
        """
        samplers, seeds = list(samplers), list(seeds)
        keys = []
        for p in problems:
            for t in resolve_targets(self.problem_of(p), targets):
                keys += [RunKey(p, t, s, seed) for seed in seeds for s in samplers]
        return keys

    def run_all(
        self,
        keys: Sequence[RunKey],
        protocol: Protocol,
        storage: str = DEFAULT_STORAGE,
        jobs: int = 1,
        log: bool = True,
    ) -> list[str]:
        """Run every missing run of ``keys`` (priors first), with ``jobs`` processes.

        Args:
            keys: Runs, e.g. from :meth:`plan`.
            protocol: Protocol knobs.
            storage: Storage URL (a URL, so that worker processes can open it).
            jobs: Number of worker processes; 1 runs in this process.
            log: Print one line per finished run.
        """
        done = _complete_names(get_storage(storage))
        status: list[str] = []
        todo, unavailable = [], {}
        for k in keys:
            reason = self.samplers[k.sampler].unavailable()
            if k.study_name(protocol) in done:
                status.append(f"skipped (stored) {k.study_name(protocol)}")
            elif reason:
                unavailable[k.sampler] = reason
                status.append(f"skipped (unavailable) {k.study_name(protocol)}: {reason}")
            else:
                todo.append(k)
        for sampler, reason in unavailable.items():
            print(f"[bench] sampler {sampler!r} skipped: {reason}", file=sys.stderr)
        priors = sorted(
            {
                (k.problem, t, k.seed, protocol, storage)
                for k in todo
                if self.samplers[k.sampler].uses_priors
                for t in prior_tasks(self.problem_of(k.problem), k.target, k.seed, protocol)
                if prior_name(k.problem, t, k.seed, protocol) not in done
            },
            key=str,
        )
        work = [(k, protocol, storage) for k in todo]
        # Partials of top-level functions, so that worker processes can unpickle them.
        prior_fn, run_fn = partial(_safe_prior, self.ensure), partial(_safe_run, self.run_one)
        if jobs <= 1:
            _init_worker()
            results = [prior_fn(a) for a in priors] + [run_fn(a) for a in work]
            if log:
                print("\n".join(results), file=sys.stderr)
            return status + results
        results = []
        with multiprocessing.get_context("spawn").Pool(jobs, initializer=_init_worker) as pool:
            for i, line in enumerate(pool.imap_unordered(prior_fn, priors), 1):
                results.append(line)
                if log and (i % 10 == 0 or i == len(priors) or line.startswith("FAILED")):
                    print(f"[bench prior {i}/{len(priors)}] {line}", file=sys.stderr, flush=True)
            for i, line in enumerate(pool.imap_unordered(run_fn, work), 1):
                results.append(line)
                if log:
                    print(f"[bench {i}/{len(work)}] {line}", file=sys.stderr, flush=True)
        return status + results


#: The single-objective runs: :func:`plan` lists them, :func:`run_all` runs the missing ones.
SINGLE_RUNS = RunKind(SAMPLERS, get_problem, ensure_prior, run_one)
plan = SINGLE_RUNS.plan
run_all = SINGLE_RUNS.run_all


def summarize(keys: Sequence[RunKey], results: Sequence[str]) -> int:
    """Print a benchmark command's closing line; return its exit status (1 if a run failed).

    Args:
        keys: The planned runs.
        results: Their status lines, from :meth:`RunKind.run_all`.
    """
    failed = [r for r in results if r.startswith("FAILED")]
    done = sum(r.startswith("done") for r in results)
    print(
        f"[bench] {len(keys)} runs planned, {done} run now, {len(failed)} failed", file=sys.stderr
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runner", description=__doc__)
    parser.add_argument(
        "--problems", default="all", help="comma list, 'all', 'synthetic' or 'hetero'"
    )
    parser.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS))
    parser.add_argument("--targets", default=None, help="N (first N), 'all', or comma ids")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--n-priors", type=int, default=10)
    parser.add_argument("--prior-trials", type=int, default=50)
    parser.add_argument("--prior-sampler", choices=("tpe", "random"), default="tpe")
    parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    protocol = Protocol(args.n_priors, args.prior_trials, args.prior_sampler, args.budget)
    keys = plan(
        expand_problems(args.problems), args.samplers.split(","), range(args.seeds), args.targets
    )
    return summarize(keys, run_all(keys, protocol, args.storage, args.jobs))


def expand_problems(spec: str) -> list[str]:
    """Expand ``all``/``synthetic``/``hetero`` and comma lists into problem names.

    Args:
        spec: Problem selection.
    """
    from benchmarks.problems import HETERO
    from benchmarks.problems import SMOKE
    from benchmarks.problems import SYNTHETIC

    names: list[str] = []
    for part in spec.split(","):
        if part == "all":
            names += [n for n in problem_names() if n not in SMOKE]
        elif part == "synthetic":
            names += list(SYNTHETIC)
        elif part == "hetero":
            names += list(HETERO)
        else:
            names.append(part)
    return list(dict.fromkeys(names))


if __name__ == "__main__":
    raise SystemExit(main())
