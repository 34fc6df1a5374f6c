"""The prior storage fails during a study: the sampler keeps proposing from the priors it read.

No target trial may fail because the *prior* storage is unreadable for a while: the sampler
logs one warning, proposes from the prior studies it read before, and reads the storage again
once it is back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
import pytest
from test_storage_restart import pg_ctl

from optuna_metabo import MetaBOSampler


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    return (x - 0.3) ** 2 + (y - 0.6) ** 2


def _write_priors(storage: optuna.storages.BaseStorage | str, names: list[str]) -> None:
    for i, name in enumerate(names):
        study = optuna.create_study(
            storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=i)
        )
        study.optimize(_objective, n_trials=15)


def test_removed_prior_file_is_bridged_by_the_cached_priors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "priors.log"
    _write_priors(JournalStorage(JournalFileBackend(str(path))), ["a", "b"])
    sampler = MetaBOSampler(["a", "b"], prior_storage=str(path), seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_objective, n_trials=3)
    away = tmp_path / "away.log"
    path.rename(away)
    with caplog.at_level(logging.INFO, logger="optuna_metabo"):
        study.optimize(_objective, n_trials=4)
        unreadable = [r for r in caplog.records if "Cannot read the prior storage" in r.message]
        assert len(unreadable) == 1, [r.message for r in caplog.records]
        assert [u["study_name"] for u in sampler.prior_summary()["used"]] == ["a", "b"]
        away.rename(path)
        study.optimize(_objective, n_trials=1)
    assert any("readable again" in r.message for r in caplog.records)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len(study.trials) == 8
    sources = [t.user_attrs["metabo:source"] for t in study.trials]
    assert sources[:3] == ["prior_design"] * 3 and "prior_design" in sources[3:7]


def test_prior_storage_unreadable_from_the_start_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "priors.db"
    _write_priors(f"sqlite:///{path}", ["a"])
    path.write_bytes(b"not a database" * 100)
    study = optuna.create_study(sampler=MetaBOSampler(["a"], prior_storage=f"sqlite:///{path}"))
    with pytest.raises(ValueError, match="prior"):
        study.optimize(_objective, n_trials=1)


_WORKER = textwrap.dedent(
    """
    import sys, time
    import optuna
    from optuna_metabo import MetaBOSampler

    prior_url, target_url, name, n_trials = sys.argv[1:5]
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        time.sleep(0.3)
        return (x - 0.3) ** 2 + (y - 0.6) ** 2

    sampler = MetaBOSampler([name + "-p*"], prior_storage=prior_url, seed=None)
    study = optuna.load_study(study_name=name, storage=target_url, sampler=sampler)
    study.optimize(objective, n_trials=int(n_trials))
    """
)


def _stop_for_a_while_then_restart() -> None:
    """PostgreSQL down for 3 s while the workers keep running, then a restart on top."""
    pg_ctl("stop")
    try:
        time.sleep(3.0)
    finally:
        pg_ctl("start")
    time.sleep(1.0)
    pg_ctl("restart")


@pytest.mark.slow
@pytest.mark.services
def test_postgres_restart_under_the_priors_fails_no_target_trial(
    postgres_url: str, tmp_path: Path
) -> None:
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        pytest.fail("This test restarts PostgreSQL with pg_ctlcluster, which is not installed.")
    name = f"outage-{uuid.uuid4().hex[:8]}"
    _write_priors(postgres_url, [f"{name}-p{i}" for i in range(3)])
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    optuna.create_study(study_name=name, storage=target_url)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, postgres_url, target_url, name, "12"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    target = optuna.load_study(study_name=name, storage=target_url)
    deadline = time.monotonic() + 120
    while len(target.get_trials(states=(TrialState.COMPLETE,))) < 6:
        assert time.monotonic() < deadline, "the workers did not get going"
        time.sleep(0.2)
    restart = threading.Thread(target=_stop_for_a_while_then_restart)
    restart.start()
    try:
        outputs = [w.communicate(timeout=300)[0] for w in workers]
    finally:
        restart.join()
        subprocess.run(["pg_isready", "-h", "127.0.0.1", "-t", "30"], check=False)
    states = [t.state for t in target.get_trials()]
    assert states.count(TrialState.COMPLETE) == 24, (states, outputs)
    assert all(w.returncode == 0 for w in workers), outputs
