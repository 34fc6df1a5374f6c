"""The study's own database restarts while 4 workers run: the worker recipe loses nothing.

The workers follow ``examples/distributed_worker.py`` (the recipe of docs/distributed.md): a
heartbeat storage with ``pool_pre_ping``, a heartbeat that outlives a failed beat,
``RetryFailedTrialCallback``, and a loop that survives storage errors. PostgreSQL is stopped
for 2 s and started again while trials run. Afterwards the study must hold the requested
number of COMPLETE trials; a trial may have failed only at the restart, and then its
configuration was re-queued and completed; no configuration was evaluated twice except such a
deliberate retry; nothing was left waiting or running; and the prior study is unchanged.
"""

from __future__ import annotations

from collections import defaultdict
import json
import os
from pathlib import Path
import shutil
import subprocess
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import pytest
from test_distributed import Launcher
from test_distributed import make_prior
from test_distributed import open_storage
from test_distributed import prior_and_target
from test_distributed import study_checksum
from test_distributed import StudyNames
from test_distributed import toy_objective


N_WORKERS = 4
N_COMPLETE = 16
SLEEP_S = 1.0
HEARTBEAT_S = 1
GRACE_PERIOD_S = 10  # Longer than the outage (about 3 s), as the recipe asks.
OUTAGE_S = 2.0


def restart_worker_main(config: dict[str, Any]) -> None:
    """One worker of the recipe; each evaluation it finishes is appended to its own log."""
    from examples.distributed_worker import restart_safe_storage
    from examples.distributed_worker import run_until_complete
    from optuna_metabo import MetaBOSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = restart_safe_storage(config["url"], HEARTBEAT_S, GRACE_PERIOD_S)
    sampler = MetaBOSampler(
        [config["prior"]],
        prior_storage=config["url"],
        seed=config["index"],
        n_startup_trials=2,
        warn_independent_sampling=False,
    )
    study = optuna.load_study(study_name=config["study"], storage=storage, sampler=sampler)
    directory = Path(config["log_dir"])

    def objective(trial: optuna.Trial) -> float:
        value = toy_objective(trial)
        start = time.time()
        time.sleep(SLEEP_S)
        record = {"number": trial.number, "params": trial.params, "start": start}
        with open(directory / f"evaluations-{config['index']}.jsonl", "a") as log:
            log.write(json.dumps({**record, "end": time.time()}) + "\n")
        return value

    errors = run_until_complete(
        study, objective, config["n_complete"], retry_wait=1.0, poll_interval=0.5, max_wait=60
    )
    (directory / f"errors-{config['index']}").write_text(str(errors))


def pg_ctl(action: str) -> None:
    """Runs ``pg_ctlcluster <version> main <action>`` on this machine's PostgreSQL."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _ensure_postgres_running() -> None:
    ready = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-t", "5"], check=False)
    if ready.returncode != 0:
        pg_ctl("start")
    subprocess.run(["pg_isready", "-h", "127.0.0.1", "-t", "30"], check=False)


def _wait_for_complete(url: str, study_name: str, n: int, launcher: Launcher) -> None:
    storage = optuna.storages.RDBStorage(url)
    study_id = storage.get_study_id_from_name(study_name)
    deadline = time.monotonic() + 150
    states = (TrialState.COMPLETE,)
    while True:
        try:  # A connection that a server restart closed is not this test's concern here.
            if len(storage.get_all_trials(study_id, deepcopy=False, states=states)) >= n:
                break
        except optuna.exceptions.StorageInternalError:
            storage.engine.dispose()
        assert launcher.process.poll() is None, f"workers ended early:\n{launcher.stderr()}"
        assert time.monotonic() < deadline, "the workers did not get going"
        time.sleep(0.2)
    storage.engine.dispose()


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


@pytest.mark.slow
@pytest.mark.services
def test_workers_lose_nothing_through_a_postgresql_restart(
    postgres_url: str, tmp_path: Path
) -> None:
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        pytest.fail("This test restarts PostgreSQL with pg_ctlcluster, which is not installed.")
    spec = {"kind": "rdb", "url": postgres_url}
    names = StudyNames(spec)
    try:
        storage = open_storage(spec)
        prior_name, target_name, before = prior_and_target(storage, names)
        storage.engine.dispose()  # type: ignore[attr-defined]
        configs = [
            {
                "url": postgres_url,
                "prior": prior_name,
                "study": target_name,
                "index": i,
                "n_complete": N_COMPLETE,
                "log_dir": str(tmp_path),
            }
            for i in range(N_WORKERS)
        ]
        launcher = Launcher(configs, tmp_path, entry="test_storage_restart:restart_worker_main")
        _wait_for_complete(postgres_url, target_name, N_WORKERS, launcher)
        down_at = time.time()
        pg_ctl("stop")
        try:
            time.sleep(OUTAGE_S)
        finally:
            pg_ctl("start")
        up_at = time.time()
        codes = launcher.exit_codes(timeout=240)
        assert codes == [0] * N_WORKERS, f"exit codes {codes}:\n{launcher.stderr()}"
        log = launcher.log.read_text(errors="replace")
        errors = sum(int((tmp_path / f"errors-{i}").read_text()) for i in range(N_WORKERS))
        failed_beats = log.count("Heartbeat of trial id")
        assert errors + failed_beats > 0, "the restart did not reach the workers"

        fresh = open_storage(spec)
        trials = fresh.get_all_trials(fresh.get_study_id_from_name(target_name))
        evaluations = [
            json.loads(line)
            for path in sorted(tmp_path.glob("evaluations-*.jsonl"))
            for line in path.read_text().splitlines()
        ]
        _check_nothing_lost(trials, evaluations, down_at, up_at)
        assert study_checksum(fresh, prior_name) == before
        failed = {t.number for t in trials if t.state == TrialState.FAIL}
        print(
            f"{len(trials)} trials, {len(failed)} failed and retried "
            f"({sum(e['number'] in failed for e in evaluations)} after their objective ended); "
            f"{errors} storage errors and {failed_beats} failed heartbeats survived"
        )
    finally:
        _ensure_postgres_running()
        names.cleanup()


def _check_nothing_lost(
    trials: list[FrozenTrial], evaluations: list[dict[str, Any]], down_at: float, up_at: float
) -> None:
    by_number = {t.number: t for t in trials}
    states = [t.state for t in trials]
    assert set(states) <= {TrialState.COMPLETE, TrialState.FAIL}, states
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= N_COMPLETE
    # A trial failed only at the restart (it had started by the time the database was back),
    # and a COMPLETE retry of it holds its configuration.
    retried = {n for t in complete for n in t.system_attrs.get("retry_history", [])}
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.datetime_start is not None
            assert t.datetime_start.timestamp() <= up_at + 1.0, (t.number, down_at, up_at)
            if t.params:  # A trial failed before sampling ran nothing: no retry needed.
                assert t.number in retried, f"failed trial {t.number} was not retried"
    # Every evaluation that finished is a COMPLETE trial, or one that failed and was retried.
    for e in evaluations:
        trial = by_number[e["number"]]
        assert trial.params == e["params"]
        assert trial.state == TrialState.COMPLETE or e["number"] in retried, e
    # No configuration was evaluated twice, except a failed trial and its retries.
    numbers_by_config: dict[str, list[int]] = defaultdict(list)
    for e in evaluations:
        numbers_by_config[_key(e["params"])].append(e["number"])
    for numbers in numbers_by_config.values():
        first, *repeats = sorted(numbers)
        for n in repeats:
            history = by_number[n].system_attrs.get("retry_history", [])
            assert first in history, f"configuration of trial {first} evaluated again by {n}"
    assert len({_key(t.params) for t in complete}) == len(complete)
    # Nor did two evaluations of one configuration overlap in time.
    for i, a in enumerate(evaluations):
        for b in evaluations[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["params"] != b["params"], (a["number"], b["number"])


def test_a_requeued_trial_is_a_pending_point() -> None:
    """A failed trial re-queued with its parameters (WAITING, as RetryFailedTrialCallback leaves
    it) is pending for a worker sampling meanwhile: the prior-design trial that would re-use
    the same prior configuration takes the next one instead."""
    from optuna_metabo import MetaBOSampler

    storage = optuna.storages.InMemoryStorage()
    make_prior(storage, "prior")

    def sampler() -> MetaBOSampler:
        return MetaBOSampler(["prior"], prior_storage=storage, seed=0)

    reference = optuna.create_study(study_name="reference", storage=storage, sampler=sampler())
    reference.optimize(toy_objective, n_trials=1)
    first = reference.trials[0]
    study = optuna.create_study(study_name="target", storage=storage, sampler=sampler())
    trial = study.ask()  # Started before the failed trial was re-queued.
    requeued = optuna.trial.create_trial(
        state=TrialState.WAITING, params=first.params, distributions=first.distributions
    )
    study.add_trial(requeued)
    toy_objective(trial)
    assert trial.params != first.params
    assert study.trials[0].user_attrs["metabo:source"] == "prior_design"
