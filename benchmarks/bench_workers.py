"""Parallel workers: wall-clock speed-up of N workers over 1, and per-trial sampler overhead.

Each worker is a separate process with its own storage connection and its own
``MetaBOSampler(seed=worker_index)``, all on one target study, as on a cluster. Workers are
forked from this process after the heavy imports, so process start-up is not counted.

1. Speed-up: the same total number of trials (``--trials``) with 1 worker and with
   ``--workers`` workers; the objective sleeps ``--sleep`` seconds (a cheap model training).
   Wall clock is measured from the first trial's start to the last trial's end; the sampler
   overhead of each trial (below) is summarized too.
2. Overhead: ``--workers`` workers run a study to ``--grow-to`` trials; the sampler overhead of
   a trial is the time from its creation until all its parameters are sampled (relative-space
   inference, GP fit, acquisition optimization and storage round-trips). Reported per block of
   trials as the study grows.

With ``--grpc`` the workers reach the storage only through Optuna's gRPC storage proxy
(``run_grpc_proxy_server`` in a process of its own in front of ``--storage``, one
``GrpcStorageProxy`` per worker, also as ``prior_storage``); without it each worker opens the
database directly.

Usage::

    python -m benchmarks.bench_workers                       # SQLite file in a temp dir
    python -m benchmarks.bench_workers --storage postgresql+psycopg2://postgres@127.0.0.1/test
    python -m benchmarks.bench_workers --skip-overhead --trials 16 --sleep 0.5
    python -m benchmarks.bench_workers --storage postgresql+psycopg2://postgres@127.0.0.1/test \
        --grpc --workers 16 --trials 64 --sleep 0.5 --skip-overhead --skip-single-worker
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import math
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any
import uuid
import warnings

import gpytorch  # noqa: F401  (heavy imports before forking the workers)
import optuna
import torch  # noqa: F401

from optuna_metabo import MetaBOSampler


def _objective(sleep: float) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)  # The first suggestion runs the sampler.
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("layers", 1, 6)
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        trial.set_user_attr("sampled_at", time.time())
        time.sleep(sleep)
        value = (x - 0.3) ** 2 + 0.1 * (math.log10(lr) + 2.5) ** 2 + 0.05 * (layers - 3) ** 2
        return value + {"a": 0.0, "b": 0.2, "c": 0.4}[kind]

    return objective


def _prior(storage: str, name: str, n_trials: int) -> None:
    def related(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("layers", 1, 6)
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        value = (x - 0.35) ** 2 + 0.1 * (math.log10(lr) + 2.4) ** 2 + 0.05 * (layers - 3) ** 2
        return value + {"a": 0.0, "b": 0.25, "c": 0.4}[kind]

    rdb = optuna.storages.RDBStorage(storage)
    study = optuna.create_study(
        study_name=name, storage=rdb, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(related, n_trials=n_trials)
    rdb.engine.dispose()  # No pooled connection may be shared with the forked workers.


_PROXY_CODE = (
    "import sys, optuna; from optuna.storages import get_storage, run_grpc_proxy_server; "
    "optuna.logging.set_verbosity(optuna.logging.WARNING); "
    "run_grpc_proxy_server(get_storage(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]))"
)


def start_grpc_proxy(storage: str) -> tuple[subprocess.Popen[bytes], int]:
    """Starts ``run_grpc_proxy_server`` in front of ``storage`` in a process of its own.

    This process itself opens no gRPC channel, so forking workers afterwards is safe.

    Args:
        storage: The RDB URL to proxy.

    Returns:
        The server process (kill it when done) and its port on 127.0.0.1.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = subprocess.Popen([sys.executable, "-c", _PROXY_CODE, storage, str(port)])
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the gRPC proxy server exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("the gRPC proxy server did not start") from None
            time.sleep(0.2)


def _open(storage: str, grpc_port: int | None) -> str | optuna.storages.BaseStorage:
    if grpc_port is None:
        return storage
    return optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=grpc_port)


def _worker(
    storage: str,
    grpc_port: int | None,
    study_name: str,
    prior: str,
    index: int,
    n: int,
    sleep: float,
) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # GrpcStorageProxy
    sampler = MetaBOSampler([prior], prior_storage=_open(storage, grpc_port), seed=index)
    study_storage = _open(storage, grpc_port)
    study = optuna.load_study(study_name=study_name, storage=study_storage, sampler=sampler)
    study.optimize(_objective(sleep), n_trials=n)


def _run(
    storage: str,
    prior: str,
    n_workers: int,
    n_trials: int,
    sleep: float,
    grpc_port: int | None = None,
) -> str:
    """Runs ``n_trials`` split over ``n_workers`` forked workers; returns the study name."""
    name = f"bench-workers-{uuid.uuid4().hex[:8]}"
    rdb = optuna.storages.RDBStorage(storage)
    optuna.create_study(study_name=name, storage=rdb)
    rdb.engine.dispose()  # No pooled connection may be shared with the forked workers.
    context = multiprocessing.get_context("fork")
    shares = [n_trials // n_workers + (i < n_trials % n_workers) for i in range(n_workers)]
    processes = [
        context.Process(
            target=_worker, args=(storage, grpc_port, name, prior, i, shares[i], sleep)
        )
        for i in range(n_workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    codes = [p.exitcode for p in processes]
    if any(codes):
        raise RuntimeError(f"worker exit codes {codes}")
    return name


def _trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    rdb = optuna.storages.RDBStorage(storage)
    trials = optuna.load_study(study_name=name, storage=rdb).get_trials()
    rdb.engine.dispose()
    return trials


def _wall_clock(trials: list[optuna.trial.FrozenTrial]) -> float:
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    return (end - start).total_seconds()


def _overheads(trials: list[optuna.trial.FrozenTrial]) -> list[float]:
    """Per trial, by number: seconds from trial creation until its parameters are sampled."""
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        assert t.datetime_start is not None
        out.append(t.user_attrs["sampled_at"] - t.datetime_start.timestamp())
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", default="", help="RDB URL (default: temp SQLite file)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=24, help="total trials, speed-up part")
    parser.add_argument("--sleep", type=float, default=1.0, help="objective seconds per trial")
    parser.add_argument("--grow-to", type=int, default=200, help="trials, overhead part")
    parser.add_argument("--grow-sleep", type=float, default=0.2)
    parser.add_argument("--block", type=int, default=25, help="trials per overhead row")
    parser.add_argument("--prior-trials", type=int, default=50)
    parser.add_argument("--skip-speedup", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument(
        "--skip-single-worker", action="store_true", help="speed-up part: no 1-worker run"
    )
    parser.add_argument(
        "--grpc", action="store_true", help="workers go through a gRPC storage proxy"
    )
    args = parser.parse_args(argv)

    directory = tempfile.mkdtemp(prefix="bench-workers-")
    storage = args.storage or f"sqlite:///{os.path.join(directory, 'bench.db')}"
    prior = f"bench-prior-{uuid.uuid4().hex[:8]}"
    _prior(storage, prior, args.prior_trials)
    created = [prior]
    results: dict[str, Any] = {
        "storage": storage.split("://")[0],
        "grpc": args.grpc,
        "cpus": os.cpu_count(),
    }
    server, grpc_port = start_grpc_proxy(storage) if args.grpc else (None, None)
    try:
        if not args.skip_speedup:
            seconds, overhead = {}, {}
            counts = (args.workers,) if args.skip_single_worker else (1, args.workers)
            for n_workers in counts:
                name = _run(storage, prior, n_workers, args.trials, args.sleep, grpc_port)
                created.append(name)
                trials = _trials(storage, name)
                seconds[n_workers] = _wall_clock(trials)
                per_trial = sorted(_overheads(trials))
                overhead[n_workers] = (
                    statistics.median(per_trial),
                    per_trial[min(len(per_trial) - 1, int(0.9 * len(per_trial)))],
                )
            results["speedup"] = {"seconds": seconds, "overhead": overhead}
            via = "gRPC proxy" if args.grpc else "direct"
            print(
                f"\n## Throughput ({args.trials} trials, objective sleeps {args.sleep} s, "
                f"{results['storage']} {via})\n"
            )
            print(
                "| workers | wall clock (s) | trials/min | overhead median (s) | p90 (s) |\n"
                "|---:|---:|---:|---:|---:|"
            )
            for n_workers, s in seconds.items():
                median, p90 = overhead[n_workers]
                print(
                    f"| {n_workers} | {s:.1f} | {60 * args.trials / s:.1f} | {median:.2f} "
                    f"| {p90:.2f} |"
                )
            if 1 in seconds and args.workers != 1:
                speedup = seconds[1] / seconds[args.workers]
                results["speedup"]["speedup"] = speedup
                print(f"\nSpeed-up of {args.workers} workers over 1: {speedup:.2f}x")
        if not args.skip_overhead:
            name = _run(storage, prior, args.workers, args.grow_to, args.grow_sleep, grpc_port)
            created.append(name)
            overheads = _overheads(_trials(storage, name))
            rows = []
            print(f"\n## Sampler overhead per trial, {args.workers} workers, to {args.grow_to}\n")
            print("| trials | median (s) | p90 (s) | max (s) |\n|---|---:|---:|---:|")
            for first in range(0, len(overheads), args.block):
                block = sorted(overheads[first : first + args.block])
                p90 = block[min(len(block) - 1, int(0.9 * len(block)))]
                row = (first, first + len(block) - 1, statistics.median(block), p90, block[-1])
                rows.append(row)
                print(f"| {row[0]}-{row[1]} | {row[2]:.2f} | {row[3]:.2f} | {row[4]:.2f} |")
            results["overhead"] = rows
    finally:
        if server is not None:
            server.kill()
            server.wait()
        if args.storage:  # Leave a shared database as it was.
            for name in created:
                optuna.delete_study(study_name=name, storage=storage)
    return results


if __name__ == "__main__":
    main()
