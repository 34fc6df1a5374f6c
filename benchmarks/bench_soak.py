"""Soak: many trials by several workers on PostgreSQL; memory, row counts, nothing lost.

``--workers`` forked worker processes, each with its own storage connection and
``MetaBOSampler(seed=index)``, grow one study to ``--trials`` trials (split evenly) with an
objective that sleeps ``--sleep`` seconds, next to a prior study of ``--prior-trials`` trials.
The run is bounded: after ``--max-minutes`` every worker stops at the end of its current trial.

Reported:

- memory: each worker's resident set size (RSS, from ``/proc``) sampled every
  ``--sample-every`` seconds; its peak in the second and in the last quarter of the run (the
  first is the warm-up), and their ratio (growth); and the RSS after each trial against the
  study's size at that trial;
- storage: the study's rows in each trial table against what its trials hold (trials, params,
  values, user and system attributes, intermediate values), and that the prior is unchanged;
- nothing lost: the trials the workers finished are exactly the storage's COMPLETE trials, and
  any other trial was left by a database outage that the workers survived (counted);
- sampler overhead (trial creation until its parameters are sampled) at the start and the end.

Usage::

    python -m benchmarks.bench_soak                                   # 4 workers, 400 trials
    python -m benchmarks.bench_soak --workers 8 --trials 2000 --max-minutes 15   # the full soak
    python -m benchmarks.bench_soak --storage postgresql+psycopg2://user@db/optuna

Exits with status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
import json
import multiprocessing
from multiprocessing.process import BaseProcess
import os
from pathlib import Path
import statistics
import tempfile
import time
from typing import Any
import uuid

import gpytorch  # noqa: F401  (heavy imports before forking the workers)
import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import sqlalchemy
import torch  # noqa: F401

from benchmarks.bench_workers import _objective
from benchmarks.bench_workers import _prior
from examples.distributed_worker import caused_by_storage
from optuna_metabo import MetaBOSampler


DEFAULT_STORAGE = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
# Each trial table and what one trial contributes to it.
_ROWS_PER_TRIAL = {
    "trials": lambda t: 1,
    "trial_params": lambda t: len(t.params),
    "trial_values": lambda t: len(t.values or []),
    "trial_user_attributes": lambda t: len(t.user_attrs),
    "trial_system_attributes": lambda t: len(t.system_attrs),
    "trial_intermediate_values": lambda t: len(t.intermediate_values),
}


def _worker(config: dict[str, Any]) -> None:
    """One worker: completes its share of trials until done or the deadline, then reports.

    A trial that a database outage (another job restarting the server) ends is logged as a
    storage error, and the worker goes on; the report counts those errors.
    """
    os.environ["OMP_NUM_THREADS"] = "1"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(config["storage"], engine_kwargs={"pool_pre_ping": True})
    sampler = MetaBOSampler(
        [config["prior"]], prior_storage=config["storage"], seed=config["index"]
    )
    study = optuna.load_study(study_name=config["study"], storage=storage, sampler=sampler)
    finished: list[tuple[int, float | None]] = []  # (trial number, RSS in MiB after it)

    def count(study: optuna.Study, trial: FrozenTrial) -> None:
        finished.append((trial.number, _rss_mib(os.getpid())))

    errors = 0
    while len(finished) < config["n"] and time.time() < config["deadline"]:
        try:
            study.optimize(_objective(config["sleep"]), n_trials=1, callbacks=[count])
        except Exception as error:
            if not caused_by_storage(error):
                raise
            errors += 1
            time.sleep(2.0)
    Path(config["report"]).write_text(json.dumps({"finished": finished, "errors": errors}))


def _rss_mib(pid: int) -> float | None:
    """The resident set size of process ``pid`` in MiB, or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class MemoryTrace:
    """RSS samples of one worker: (seconds since start, MiB)."""

    samples: list[tuple[float, float]]

    def peaks(self) -> tuple[float, float]:
        """Peak RSS in the second and in the last quarter of the worker's life (the first
        quarter is the warm-up: lazily loaded modules, the first GP fits)."""
        end = self.samples[-1][0]
        early = [m for t, m in self.samples if end / 4 <= t <= end / 2] or [self.samples[0][1]]
        late = [m for t, m in self.samples if t >= 3 * end / 4] or [self.samples[-1][1]]
        return max(early), max(late)


def _watch(processes: list[BaseProcess], every: float) -> list[MemoryTrace]:
    """Samples the workers' RSS until all have exited."""
    traces = [MemoryTrace([]) for _ in processes]
    start = time.monotonic()
    while any(p.is_alive() for p in processes):
        now = time.monotonic() - start
        for process, trace in zip(processes, traces):
            rss = _rss_mib(process.pid) if process.pid is not None else None
            if rss is not None and process.is_alive():
                trace.samples.append((now, rss))
        time.sleep(every)
    return traces


def _row_counts(storage: str, study_id: int) -> dict[str, int]:
    """The study's rows in each trial table, counted in SQL."""
    engine = sqlalchemy.create_engine(storage)
    counts = {}
    try:
        with engine.connect() as connection:
            for table in _ROWS_PER_TRIAL:
                where = (
                    "study_id = :id"
                    if table == "trials"
                    else "trial_id IN (SELECT trial_id FROM trials WHERE study_id = :id)"
                )
                query = sqlalchemy.text(f"SELECT count(*) FROM {table} WHERE {where}")
                counts[table] = int(connection.execute(query, {"id": study_id}).scalar_one())
    finally:
        engine.dispose()
    return counts


def _overhead(trials: list[FrozenTrial]) -> list[float]:
    return [
        t.user_attrs["sampled_at"] - t.datetime_start.timestamp()
        for t in sorted(trials, key=lambda t: t.number)
        if t.datetime_start is not None and "sampled_at" in t.user_attrs
    ]


def _prior_digest(storage: optuna.storages.BaseStorage, name: str) -> str:
    trials = storage.get_all_trials(storage.get_study_id_from_name(name))
    return json.dumps(
        [[t.number, t.state.name, t.values, sorted(t.params.items())] for t in trials],
        default=repr,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the soak and prints its report.

    Args:
        argv: Command-line arguments (see the module docstring).

    Returns:
        The figures, as plain data; ``"ok"`` tells whether every check passed.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="RDB URL")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=400, help="trials in all")
    parser.add_argument("--sleep", type=float, default=0.05, help="objective seconds")
    parser.add_argument("--max-minutes", type=float, default=5.0, help="bound on the run")
    parser.add_argument("--prior-trials", type=int, default=50)
    parser.add_argument("--sample-every", type=float, default=1.0, help="RSS sampling (s)")
    parser.add_argument("--max-growth", type=float, default=1.25, help="allowed RSS ratio")
    args = parser.parse_args(argv)

    prior, name = (f"soak-{role}-{uuid.uuid4().hex[:8]}" for role in ("prior", "target"))
    _prior(args.storage, prior, args.prior_trials)
    rdb = optuna.storages.RDBStorage(args.storage)
    prior_before = _prior_digest(rdb, prior)
    study_id = optuna.create_study(study_name=name, storage=rdb)._study_id
    rdb.engine.dispose()  # No pooled connection may be shared with the forked workers.
    directory = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    started = time.time()
    deadline = started + 60 * args.max_minutes
    shares = [
        args.trials // args.workers + (i < args.trials % args.workers) for i in range(args.workers)
    ]
    context = multiprocessing.get_context("fork")
    processes: list[BaseProcess] = []
    for i, share in enumerate(shares):
        config = {
            "storage": args.storage,
            "prior": prior,
            "study": name,
            "index": i,
            "n": share,
            "sleep": args.sleep,
            "deadline": deadline,
            "report": str(directory / f"worker-{i}.json"),
        }
        processes.append(context.Process(target=_worker, args=(config,)))
    for process in processes:
        process.start()
    try:
        traces = _watch(processes, args.sample_every)
        wall = time.time() - started
        codes = [p.exitcode for p in processes]
        reported: list[dict[str, Any]] = [
            json.loads(path.read_text())
            if (path := directory / f"worker-{i}.json").exists()
            else {"finished": [], "errors": 0}
            for i in range(args.workers)
        ]
        rdb = optuna.storages.RDBStorage(args.storage)
        trials = rdb.get_all_trials(study_id)
        counts = _row_counts(args.storage, study_id)
        prior_after = _prior_digest(rdb, prior)
        results = _report(args, traces, codes, reported, trials, counts, wall)
        results["checks"]["prior unchanged"] = prior_after == prior_before
        results["ok"] = all(results["checks"].values())
        print(f"\nprior unchanged: {prior_after == prior_before}; all checks: {results['ok']}")
        rdb.engine.dispose()
    finally:
        _delete_studies(args.storage, [prior, name])
    return results


def _delete_studies(storage: str, names: list[str], attempts: int = 5) -> None:
    """Deletes the soak's studies, waiting out a database restart by another job."""
    rdb = optuna.storages.RDBStorage(storage, engine_kwargs={"pool_pre_ping": True})
    for attempt in range(attempts):
        try:
            for name in names:
                with contextlib.suppress(KeyError):  # Deleted by an earlier attempt.
                    optuna.delete_study(study_name=name, storage=rdb)
            break
        except Exception as error:
            if not caused_by_storage(error) or attempt == attempts - 1:
                raise
            time.sleep(5.0)
    rdb.engine.dispose()


def _report(
    args: argparse.Namespace,
    traces: list[MemoryTrace],
    codes: list[int | None],
    reported: list[dict[str, Any]],
    trials: list[FrozenTrial],
    counts: dict[str, int],
    wall: float,
) -> dict[str, Any]:
    states = [t.state for t in trials]
    n_complete = states.count(TrialState.COMPLETE)
    finished = sorted(n for worker in reported for n, _ in worker["finished"])
    errors = sum(worker["errors"] for worker in reported)
    stopped_early = n_complete < args.trials and wall >= 60 * args.max_minutes
    print(
        f"\n## Soak: {args.workers} workers, {n_complete} of {args.trials} trials in "
        f"{wall / 60:.1f} min ({60 * n_complete / wall:.0f} trials/min), objective sleeps "
        f"{args.sleep} s{' (stopped by --max-minutes)' if stopped_early else ''}\n"
    )
    print("| worker | trials | RSS peak, 2nd quarter (MiB) | last quarter (MiB) | ratio |")
    print("|---:|---:|---:|---:|---:|")
    ratios = []
    for i, trace in enumerate(traces):
        first, last = trace.peaks() if trace.samples else (float("nan"), float("nan"))
        ratios.append(last / first)
        n = len(reported[i]["finished"])
        print(f"| {i} | {n} | {first:.0f} | {last:.0f} | {last / first:.2f} |")
    # RSS against the study's size: the GP is conditioned on every target trial, so its
    # working set grows with the study even when nothing leaks.
    by_size: dict[int, float] = {}
    width = max(1, args.trials // 5)
    for worker in reported:
        for number, rss in worker["finished"]:
            if rss is not None:
                bucket = number // width
                by_size[bucket] = max(by_size.get(bucket, 0.0), rss)
    print("\n| trials in the study | RSS peak over the workers (MiB) |\n|---|---:|")
    for bucket in sorted(by_size):
        print(f"| {bucket * width}-{(bucket + 1) * width - 1} | {by_size[bucket]:.0f} |")
    expected = {table: sum(f(t) for t in trials) for table, f in _ROWS_PER_TRIAL.items()}
    print("\n| table | rows | expected from the trials |\n|---|---:|---:|")
    for table, n in counts.items():
        print(f"| {table} | {n} | {expected[table]} |")
    overhead = _overhead(trials)
    tenth = max(1, len(overhead) // 10)
    head, tail = statistics.median(overhead[:tenth]), statistics.median(overhead[-tenth:])
    print(
        f"\nSampler overhead per trial, median: first {tenth} trials {head:.2f} s, "
        f"last {tenth} trials {tail:.2f} s"
    )
    complete = sorted(t.number for t in trials if t.state == TrialState.COMPLETE)
    others = [f"{t.number}:{t.state.name}" for t in trials if t.state != TrialState.COMPLETE]
    print(f"\nStorage errors survived: {errors}; trials not COMPLETE: {others or 'none'}")
    checks = {
        "workers exited 0": codes == [0] * len(codes),
        "the workers' finished trials are the storage's COMPLETE ones": finished == complete,
        "no trial left unfinished but by a storage error": not others or errors > 0,
        "row counts match the trials": counts == expected,
        "RSS growth within --max-growth": max(ratios) <= args.max_growth,
    }
    for check, passed in checks.items():
        print(f"- {check}: {'yes' if passed else 'NO'}")
    return {
        "workers": args.workers,
        "trials": len(trials),
        "requested": args.trials,
        "minutes": wall / 60,
        "rss_peaks": [t.peaks() if t.samples else None for t in traces],
        "rss_by_study_size": {b * width: m for b, m in sorted(by_size.items())},
        "rows": counts,
        "overhead_first_last": (head, tail),
        "checks": checks,
    }


if __name__ == "__main__":
    raise SystemExit(0 if main()["ok"] else 1)
