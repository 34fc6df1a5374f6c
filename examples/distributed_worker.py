"""A worker that survives a restart of the study's database (the recipe of docs/distributed.md).

Start one per device, on as many machines as you like, all with the same ``--storage`` and
``--study``; each builds its own ``MetaBOSampler``. The workers stop together once the study
holds ``--n-trials`` COMPLETE trials and none is waiting or running. What makes them
restart-safe:

- ``engine_kwargs={"pool_pre_ping": True}``: a pooled connection that the restart closed is
  replaced before use, instead of failing the next call.
- A heartbeat that outlives the restart (``RestartSafeRDBStorage``): Optuna's heartbeat thread
  stops at the first beat that fails, after which another worker would fail the trial while
  its objective still runs. A running trial whose worker stays alive therefore completes.
- ``RetryFailedTrialCallback``: a trial whose worker died, or lost the database inside
  ``study.optimize``, is failed by the heartbeat after ``grace_period`` seconds and re-queued
  with its parameters; a worker runs the re-queued trial before any new one, and other workers'
  samplers treat it as pending meanwhile.
- ``run_until_complete``: a storage error ends one ``study.optimize`` call, not the worker; it
  waits and goes on.

Usage::

    python -m examples.distributed_worker --storage postgresql+psycopg2://u:p@db/optuna \\
        --study resnet-2025 --prior-studies "resnet-2024-*" --n-trials 100 --index 3
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from collections.abc import Sequence
import logging
import math
import time
from typing import Any
import warnings

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState
import sqlalchemy.exc

from optuna_metabo import MetaBOSampler


_logger = logging.getLogger(__name__)

# What a storage call raises while the database restarts or is unreachable.
STORAGE_ERRORS: tuple[type[Exception], ...] = (
    optuna.exceptions.StorageInternalError,
    sqlalchemy.exc.SQLAlchemyError,
)


class RestartSafeRDBStorage(RDBStorage):
    """``RDBStorage`` whose heartbeat goes on after a beat that failed.

    Optuna records a running trial's heartbeat in a thread that ends at the first exception,
    so a database restart would stop the heartbeat of every trial running through it, and
    another worker would fail those trials ``grace_period`` seconds later while their
    objectives still run. Here a failed beat is logged and the next one is tried as usual.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except STORAGE_ERRORS as error:
            _logger.warning("Heartbeat of trial id %d failed (%s); retrying.", trial_id, error)


def restart_safe_storage(
    url: str, heartbeat_interval: int = 60, grace_period: int = 180, max_retry: int = 3
) -> RDBStorage:
    """A storage for workers that must survive a restart of the database at ``url``.

    Args:
        url: The SQLAlchemy URL of the study's database (PostgreSQL or MySQL).
        heartbeat_interval: Seconds between heartbeats of a running trial.
        grace_period: Seconds without a heartbeat after which a running trial is failed and
            re-queued. Make it longer than the longest outage you expect: a trial running
            through a longer outage is failed and re-queued although its worker is alive.
        max_retry: How many times one configuration is re-queued.

    Returns:
        The storage, to pass to ``optuna.load_study``.
    """
    with warnings.catch_warnings():  # Heartbeats are an experimental feature of Optuna.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback: dict[str, Any]
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # Optuna >= 4.9
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
            callback = {"heartbeat_stale_trial_callback": retry}
        else:
            retry = optuna.storages.RetryFailedTrialCallback(max_retry=max_retry)
            callback = {"failed_trial_callback": retry}
        return RestartSafeRDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            **callback,
        )


def run_until_complete(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_complete: int,
    retry_wait: float = 5.0,
    poll_interval: float = 1.0,
    max_wait: float | None = None,
) -> int:
    """Runs trials until ``study`` holds ``n_complete`` COMPLETE trials, none waiting or running.

    A storage error (the database restarting) ends the current trial, not the worker: it is
    logged, and the worker tries again after ``retry_wait`` seconds. Once enough trials are
    complete or running, the worker waits for the running ones: one that fails for want of a
    heartbeat is re-queued, and this worker runs it.

    Args:
        study: The study, loaded with a heartbeat storage (see ``restart_safe_storage``).
        objective: The objective function.
        n_complete: COMPLETE trials the study must reach, over all workers.
        retry_wait: Seconds to wait after a storage error.
        poll_interval: Seconds between looks at the other workers' running trials.
        max_wait: Longest wait, in seconds, for other workers' running trials with nothing to
            do; ``None`` waits as long as trials run. A trial whose worker lost the database
            before its first heartbeat has no heartbeat and stays RUNNING for good.

    Returns:
        The number of storage errors survived.
    """
    errors = 0
    waiting_since: float | None = None
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # Re-queues trials of dead workers.
            counts = Counter(t.state for t in study.get_trials(deepcopy=False))
            n_done, n_running = counts[TrialState.COMPLETE], counts[TrialState.RUNNING]
            if counts[TrialState.WAITING] == 0 and n_done + n_running >= n_complete:
                if n_running == 0:
                    return errors
                waiting_since = waiting_since or time.monotonic()
                if not _waited_out(waiting_since, max_wait):
                    time.sleep(poll_interval)
                    continue
                if n_done >= n_complete:
                    return errors
                # Too few trials complete and the running ones never end: run another.
            waiting_since = None
            study.optimize(objective, n_trials=1)
        except Exception as error:
            if not caused_by_storage(error):
                raise  # The objective's own errors end the worker, as in study.optimize.
            errors += 1
            _logger.warning("Storage error (%s); retrying in %.0f s.", error, retry_wait)
            time.sleep(retry_wait)


def caused_by_storage(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised while handling, is a storage error.

    Optuna 5.0 reports a storage error at the end of a trial as an ``UnboundLocalError``
    raised while handling it, so the whole chain is looked at.

    Args:
        error: The exception that ended ``study.optimize``.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, STORAGE_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _waited_out(since: float, max_wait: float | None) -> bool:
    return max_wait is not None and time.monotonic() - since > max_wait


def _objective(trial: optuna.Trial) -> float:
    """Stands for a training run."""
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    layers = trial.suggest_int("layers", 1, 6)
    time.sleep(1.0)
    return (math.log10(lr) + 3) ** 2 + 0.1 * (layers - 3) ** 2


def main(argv: Sequence[str] | None = None) -> None:
    """Runs one worker.

    Args:
        argv: Command-line arguments (see the module docstring).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", required=True, help="SQLAlchemy URL of the study")
    parser.add_argument("--study", required=True, help="target study (created if missing)")
    parser.add_argument("--prior-studies", nargs="*", default=None, help="names or globs")
    parser.add_argument("--prior-storage", default=None, help="default: --storage")
    parser.add_argument("--n-trials", type=int, default=20, help="COMPLETE trials in all")
    parser.add_argument("--index", type=int, default=0, help="worker index, the seed")
    parser.add_argument("--heartbeat-interval", type=int, default=60)
    parser.add_argument("--grace-period", type=int, default=180)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    storage = restart_safe_storage(args.storage, args.heartbeat_interval, args.grace_period)
    sampler = MetaBOSampler(
        args.prior_studies,
        prior_storage=args.prior_storage or args.storage,
        seed=args.index,
    )
    study = optuna.create_study(
        study_name=args.study, storage=storage, sampler=sampler, load_if_exists=True
    )
    errors = run_until_complete(study, _objective, args.n_trials)
    print(f"worker {args.index}: done, {errors} storage errors survived")


if __name__ == "__main__":
    main()
