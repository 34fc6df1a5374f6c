"""Several worker processes, each with its own MetaBOSampler, on one study in a shared storage.

Each test starts 4 worker processes (``python -c``) that load the same target study and call
``study.optimize``; the objective sleeps so that trials overlap, and records the wall-clock
interval in which it ran. The tests check that every requested trial completes, that no two
trials that ran at the same time had the same configuration (pending trials are handled), that
prior studies in the same storage are byte-for-byte unchanged, and that a worker killed with
SIGKILL mid-trial leaves a study that the other workers, and later ones, keep using.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
import hashlib
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import Any
import uuid

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import pytest


# Every test here starts worker processes or waits out heartbeats: seconds each.
pytestmark = pytest.mark.slow


TESTS_DIR = Path(__file__).resolve().parent
N_WORKERS = 4
TRIALS_PER_WORKER = 3
SLEEP_S = 1.0
BARRIER_TIMEOUT_S = 60.0
WORKER_TIMEOUT_S = 150.0
HEARTBEAT_S = 1
GRACE_PERIOD_S = 3
_CHOICES = {"a": 0.0, "b": 0.3, "c": 0.6}


# ------------------------------------------------------------------- code run by the workers
def open_storage(spec: dict[str, Any], heartbeat: bool = False) -> BaseStorage:
    """Opens the storage described by ``spec`` (``kind``: rdb, journal_file, journal_redis or
    grpc, a ``GrpcStorageProxy``)."""
    kind = spec["kind"]
    if kind == "rdb":
        if heartbeat:
            return optuna.storages.RDBStorage(
                spec["url"], heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_PERIOD_S
            )
        return optuna.storages.RDBStorage(spec["url"])
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal import JournalRedisBackend

    if kind == "journal_file":
        return optuna.storages.JournalStorage(JournalFileBackend(spec["path"]))
    if kind == "journal_redis":
        backend = JournalRedisBackend(spec["url"], prefix=spec["prefix"])
        return optuna.storages.JournalStorage(backend)
    if kind == "grpc":
        return optuna.storages.GrpcStorageProxy(host=spec["host"], port=spec["port"])
    raise ValueError(f"Unknown storage kind {kind!r}.")


def prior_storage_arg(spec: dict[str, Any], storage: BaseStorage) -> str | BaseStorage:
    """What a user passes as ``prior_storage``: the URL or path when there is one, a proxy
    object of its own for the gRPC proxy."""
    if spec["kind"] == "rdb":
        return str(spec["url"])
    if spec["kind"] == "journal_file":
        return str(spec["path"])
    if spec["kind"] == "grpc":
        return open_storage(spec)
    return storage


def toy_objective(trial: optuna.Trial, shift: float = 0.0) -> float:
    """A cheap function of a float, a log float and a categorical; ``shift`` moves the optimum."""
    x = trial.suggest_float("x", 0.0, 1.0)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    kind = trial.suggest_categorical("kind", list(_CHOICES))
    return (x - 0.3 - shift) ** 2 + 0.1 * (math.log10(lr) + 2.5 + shift) ** 2 + _CHOICES[kind]


def worker_main(config: dict[str, Any]) -> None:
    """One worker: its own storage connection and MetaBOSampler(seed=worker index)."""
    from optuna_metabo import MetaBOSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(config["storage"], heartbeat=config.get("heartbeat", False))
    priors = config.get("priors")
    sampler = MetaBOSampler(
        priors,
        prior_storage=prior_storage_arg(config["storage"], storage) if priors else None,
        seed=config["index"],
        n_startup_trials=2,
        warn_independent_sampling=False,
    )
    study = optuna.load_study(study_name=config["study"], storage=storage, sampler=sampler)
    hang_marker = config.get("hang_marker")
    if config.get("barrier"):
        wait_for_all_workers(Path(config["barrier"]), config["index"], config["n_workers"])

    def objective(trial: optuna.Trial) -> float:
        value = toy_objective(trial)
        trial.set_user_attr("worker", config["index"])
        trial.set_user_attr("start", time.time())
        if hang_marker is not None:
            Path(hang_marker).write_text(f"{os.getpid()} {trial.number}")
            time.sleep(600)  # Killed with SIGKILL by the test while in here.
        time.sleep(config["sleep"])
        trial.set_user_attr("end", time.time())
        return value

    study.optimize(objective, n_trials=config["n_trials"])


def wait_for_all_workers(directory: Path, index: int, n_workers: int) -> None:
    """A start barrier: each worker marks itself ready, then waits for the others, so that a
    loaded machine staggering the workers' start-up does not serialize their trials."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"ready-{index}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(directory.glob("ready-*"))) < n_workers and time.monotonic() < deadline:
        time.sleep(0.05)


def launcher_main(
    configs: list[dict[str, Any]], entry: str = "test_distributed:worker_main"
) -> None:
    """Imports the sampler's heavy dependencies once, then forks one process per worker.

    Forking after the imports (and before any computation) saves each worker the several
    seconds that importing torch takes on a loaded machine; every worker still opens its own
    storage connection and builds its own sampler. Prints the workers' exit codes as JSON.

    Args:
        configs: One configuration per worker.
        entry: ``module:function`` that each worker runs with its configuration.
    """
    import importlib
    import multiprocessing

    import optuna_metabo._core.proposal  # noqa: F401  (imports torch and gpytorch)

    module_name, function_name = entry.split(":")
    target = getattr(importlib.import_module(module_name), function_name)
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=target, args=(c,)) for c in configs]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    print(json.dumps([p.exitcode for p in processes]))


_LAUNCHER_CODE = (
    "import json, os, sys; sys.path[:0] = [sys.argv[1], os.path.dirname(sys.argv[1])]; "
    "import test_distributed as t; t.launcher_main(json.loads(sys.argv[2]), sys.argv[3])"
)


class Launcher:
    """A process that runs the workers of ``configs``; its stderr is kept for failures.

    ``entry`` (``module:function``, a module of this folder or of the repository root) is what
    each worker runs.
    """

    def __init__(
        self,
        configs: list[dict[str, Any]],
        log_dir: Path,
        entry: str = "test_distributed:worker_main",
    ) -> None:
        self.log = log_dir / f"workers-{uuid.uuid4().hex[:6]}.err"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        code = [sys.executable, "-c", _LAUNCHER_CODE, str(TESTS_DIR), json.dumps(configs), entry]
        with open(self.log, "wb") as err:
            self.process = subprocess.Popen(
                code,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
            )

    def exit_codes(self, timeout: float = WORKER_TIMEOUT_S) -> list[int]:
        """Waits for all workers and returns their exit codes."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            pytest.fail(f"Workers timed out; stderr:\n{self.stderr()}")
        assert self.process.returncode == 0, f"Launcher failed:\n{self.stderr()}"
        return list(json.loads(out.decode().strip().splitlines()[-1]))

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def run_workers(configs: list[dict[str, Any]], log_dir: Path) -> None:
    """Runs the workers together and fails the test if any of them fails."""
    launcher = Launcher(configs, log_dir)
    codes = launcher.exit_codes()
    assert codes == [0] * len(configs), f"Worker exit codes {codes}; stderr:\n{launcher.stderr()}"


# ------------------------------------------------------------------------------- helpers
def study_checksum(storage: BaseStorage, study_name: str) -> str:
    """A digest of everything stored about a study's trials, to prove nothing changed."""
    study_id = storage.get_study_id_from_name(study_name)
    rows: list[Any] = []
    for t in storage.get_all_trials(study_id, deepcopy=False):
        rows.append(
            [
                t.number,
                t.state.name,
                t.values,
                sorted((k, repr(v)) for k, v in t.params.items()),
                sorted((k, repr(v)) for k, v in t.distributions.items()),
                sorted((k, repr(v)) for k, v in t.user_attrs.items()),
                sorted((k, repr(v)) for k, v in t.system_attrs.items()),
                repr(t.datetime_start),
                repr(t.datetime_complete),
            ]
        )
    rows.append(repr(storage.get_study_directions(study_id)))
    return hashlib.sha256(json.dumps(rows, default=repr).encode()).hexdigest()


def make_prior(storage: BaseStorage, name: str, n_trials: int = 12) -> optuna.Study:
    """A finished prior study of a related task, filled quickly with random search."""
    prior = optuna.create_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=1)
    )
    prior.optimize(lambda t: toy_objective(t, shift=0.05), n_trials=n_trials)
    return prior


def prior_and_target(storage: BaseStorage, names: StudyNames) -> tuple[str, str, str]:
    """Writes a prior study and creates an empty target study in ``storage``.

    Returns:
        The prior's name, the target's name and the prior's checksum before the workers.
    """
    prior_name, target_name = names("prior"), names("target")
    make_prior(storage, prior_name)
    before = study_checksum(storage, prior_name)
    optuna.create_study(study_name=target_name, storage=storage)
    return prior_name, target_name, before


def overlapping_pairs(trials: list[FrozenTrial]) -> list[tuple[FrozenTrial, FrozenTrial]]:
    """Pairs of trials whose objectives ran at the same time."""
    timed = [t for t in trials if "start" in t.user_attrs and "end" in t.user_attrs]
    pairs = []
    for i, a in enumerate(timed):
        for b in timed[i + 1 :]:
            (a0, a1), (b0, b1) = ((t.user_attrs["start"], t.user_attrs["end"]) for t in (a, b))
            if a0 < b1 and b0 < a1:
                pairs.append((a, b))
    return pairs


def assert_no_concurrent_duplicates(trials: list[FrozenTrial]) -> int:
    """Fails if two overlapping trials share a configuration; returns the number of overlaps."""
    pairs = overlapping_pairs(trials)
    duplicates = [(a.number, b.number, a.params) for a, b in pairs if a.params == b.params]
    assert not duplicates, f"Concurrently running trials got the same configuration: {duplicates}"
    return len(pairs)


def configs_for(
    spec: dict[str, Any], study: str, priors: list[str] | None, **extra: Any
) -> list[dict[str, Any]]:
    return [
        {
            "storage": spec,
            "study": study,
            "priors": priors,
            "index": i,
            "n_trials": TRIALS_PER_WORKER,
            "sleep": SLEEP_S,
            "n_workers": N_WORKERS,
            **extra,
        }
        for i in range(N_WORKERS)
    ]


# ------------------------------------------------------------------------ storages & runs
class StudyNames:
    """Unique study names for one test; ``cleanup`` deletes them (and only them) afterwards."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.tag = uuid.uuid4().hex[:10]
        self.created: list[str] = []

    def __call__(self, role: str) -> str:
        name = f"metabo-{role}-{self.tag}"
        self.created.append(name)
        return name

    def cleanup(self) -> None:
        kind = self.spec["kind"]
        if kind == "journal_redis":
            import redis

            client = redis.Redis.from_url(self.spec["url"])
            keys = list(client.scan_iter(match=f"{self.spec['prefix']}:*"))
            if keys:
                client.delete(*keys)
            return
        if kind != "rdb" or self.spec["url"].startswith("sqlite"):
            return  # Files live in a temporary directory.
        storage = open_storage(self.spec)
        for name in self.created:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=storage)
        storage.remove_session()
        storage.engine.dispose()  # type: ignore[attr-defined]


def make_spec(backend: str, request: pytest.FixtureRequest, directory: Path) -> dict[str, Any]:
    """The storage description of ``backend``; server backends go through conftest fixtures,
    which fail with a clear message when the server is missing."""
    if backend == "sqlite":
        return {"kind": "rdb", "url": f"sqlite:///{directory / 'shared.db'}"}
    if backend == "journal-file":
        return {"kind": "journal_file", "path": str(directory / "shared.log")}
    if backend == "postgresql":
        return {"kind": "rdb", "url": request.getfixturevalue("postgres_url")}
    if backend == "mysql":
        return {"kind": "rdb", "url": request.getfixturevalue("mysql_database_url")}
    if backend == "journal-redis":
        url = request.getfixturevalue("redis_url")
        return {"kind": "journal_redis", "url": url, "prefix": f"metabo-test-{uuid.uuid4().hex}"}
    raise ValueError(backend)


@dataclass
class WorkerRun:
    """What 4 workers left in a storage: the target's trials and the prior's checksums."""

    backend: str
    trials: list[FrozenTrial]
    prior_before: str
    prior_after: str


BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("journal-file"),
    pytest.param("postgresql", marks=pytest.mark.services),
    pytest.param("mysql", marks=pytest.mark.services),
    pytest.param("journal-redis", marks=pytest.mark.services),
]


@pytest.fixture(scope="module")
def mysql_database_url(mysql_url: str) -> Iterator[str]:
    """A database of its own on the MySQL/MariaDB server, dropped after this module's tests."""
    import sqlalchemy

    url = sqlalchemy.engine.make_url(mysql_url)
    name = f"metabo_test_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def worker_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerRun]:
    """4 workers x 3 trials on one target study, with a prior study in the same storage."""
    directory = tmp_path_factory.mktemp(request.param)
    spec = make_spec(request.param, request, directory)
    names = StudyNames(spec)
    try:
        storage = open_storage(spec)
        prior_name, target_name, before = prior_and_target(storage, names)
        configs = configs_for(spec, target_name, [prior_name], barrier=str(directory / "barrier"))
        run_workers(configs, directory)
        storage = open_storage(spec)  # A fresh connection sees everything the workers wrote.
        trials = storage.get_all_trials(storage.get_study_id_from_name(target_name))
        after = study_checksum(storage, prior_name)
        yield WorkerRun(request.param, trials, before, after)
    finally:
        names.cleanup()


# ------------------------------------------------------------------------------------ tests
def test_every_requested_trial_completes(worker_run: WorkerRun) -> None:
    """All 4 x 3 trials are COMPLETE, every worker contributed, the workers really overlapped,
    and the sampler itself (not a fallback) chose the configurations."""
    trials = worker_run.trials
    assert len(trials) == N_WORKERS * TRIALS_PER_WORKER
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert {t.user_attrs["worker"] for t in trials} == set(range(N_WORKERS))
    assert len(overlapping_pairs(trials)) >= N_WORKERS, "workers did not run concurrently"
    sources = {t.user_attrs.get("metabo:source") for t in trials}
    assert sources <= {"prior_design", "model", "target_model"}, sources


def test_prior_study_is_unchanged(worker_run: WorkerRun) -> None:
    """The prior study in the same storage has exactly the same trials afterwards."""
    assert worker_run.prior_after == worker_run.prior_before


def test_no_duplicate_configuration_among_running_trials(worker_run: WorkerRun) -> None:
    """Two trials whose objectives ran at the same time never share a configuration."""
    assert_no_concurrent_duplicates(worker_run.trials)


@pytest.mark.services
def test_killed_worker_on_postgresql_is_failed_by_heartbeat(
    postgres_url: str, tmp_path: Path
) -> None:
    """SIGKILL one worker mid-trial: the others finish, the heartbeat fails its trial, and the
    study stays usable for a new worker."""
    spec = {"kind": "rdb", "url": postgres_url}
    names = StudyNames(spec)
    try:
        _check_killed_worker(spec, names, tmp_path, heartbeat=True)
    finally:
        names.cleanup()


@pytest.mark.services
def test_killed_worker_on_journal_redis_stays_running_and_pending(
    redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL one worker mid-trial on the Redis journal: as with a journal file, its trial
    stays RUNNING and pending, the other workers finish, and a later worker goes on."""
    spec = {"kind": "journal_redis", "url": redis_url, "prefix": f"metabo-test-{uuid.uuid4().hex}"}
    names = StudyNames(spec)
    try:
        _check_killed_worker(spec, names, tmp_path, heartbeat=False)
    finally:
        names.cleanup()


def test_killed_worker_on_journal_file_stays_running_and_pending(tmp_path: Path) -> None:
    """Without heartbeat (JournalStorage has none), the killed trial stays RUNNING; the sampler
    treats it as a pending point, so nobody re-proposes its configuration, and the study goes
    on."""
    spec = {"kind": "journal_file", "path": str(tmp_path / "kill.log")}
    _check_killed_worker(spec, StudyNames(spec), tmp_path, heartbeat=False)


def _check_killed_worker(
    spec: dict[str, Any], names: StudyNames, tmp_path: Path, heartbeat: bool
) -> None:
    storage = open_storage(spec)
    prior_name, target_name = names("prior"), names("target")
    make_prior(storage, prior_name)
    before = study_checksum(storage, prior_name)
    optuna.create_study(study_name=target_name, storage=storage)
    marker = tmp_path / "hang-marker"
    configs = configs_for(spec, target_name, [prior_name], heartbeat=heartbeat)
    configs[0]["hang_marker"] = str(marker)
    launcher = Launcher(configs, tmp_path)
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not marker.exists():
        assert launcher.process.poll() is None, f"workers ended early:\n{launcher.stderr()}"
        assert time.monotonic() < deadline, "the victim never reached its objective"
        time.sleep(0.1)
    time.sleep(0.2)
    pid, killed_number = (int(v) for v in marker.read_text().split())
    os.kill(pid, signal.SIGKILL)  # Mid-trial, without any chance to clean up.
    killed_at = time.monotonic()
    codes = launcher.exit_codes()
    assert codes == [-signal.SIGKILL] + [0] * (N_WORKERS - 1), launcher.stderr()
    if heartbeat:
        # The killed trial is stale only once its last heartbeat is older than the grace
        # period; the other workers may finish sooner than that, so wait it out.
        time.sleep(max(0.0, killed_at + GRACE_PERIOD_S + HEARTBEAT_S + 0.5 - time.monotonic()))

    # A later worker (this process) continues the study with a fresh sampler.
    from optuna_metabo import MetaBOSampler

    storage = open_storage(spec, heartbeat=heartbeat)
    sampler = MetaBOSampler([prior_name], prior_storage=prior_storage_arg(spec, storage), seed=99)
    study = optuna.load_study(study_name=target_name, storage=storage, sampler=sampler)
    killed_params = dict(study.trials[killed_number].params)
    study.optimize(toy_objective, n_trials=2)

    trials = study.get_trials(deepcopy=False)
    n_done = (N_WORKERS - 1) * TRIALS_PER_WORKER + 2
    expected_state = TrialState.FAIL if heartbeat else TrialState.RUNNING
    assert trials[killed_number].state == expected_state
    assert sum(t.state == TrialState.COMPLETE for t in trials) == n_done
    assert len(trials) == n_done + 1
    after_kill = trials[-2:]  # Sampled here, with the killed trial in the storage.
    assert all(t.state == TrialState.COMPLETE for t in after_kill)
    assert all(
        t.user_attrs["metabo:source"] in ("prior_design", "model", "target_model")
        for t in after_kill
    )
    if not heartbeat:
        # The stale RUNNING trial is a pending point: its configuration is not proposed again.
        assert killed_params and all(t.params != killed_params for t in after_kill)
    assert study_checksum(storage, prior_name) == before


# A long-named 40-parameter space: the shared point of a trial is one system attribute of
# several kilobytes, beyond the 2,048 characters that attribute columns held before Optuna 2.6.
_WIDE_CHOICES = tuple(f"{c}-" + "variant-of-a-long-categorical-choice-" * 4 for c in "abc")


def wide_objective(trial: optuna.Trial) -> float:
    """40 parameters with 40-character names: floats, log floats, ints and long categoricals."""
    total = 0.0
    for i in range(40):
        name = f"layer_{i:02d}_regularization_strength_param"
        if i % 4 == 0:
            total += (trial.suggest_float(name, 0.0, 1.0) - 0.5) ** 2
        elif i % 4 == 1:
            total += abs(math.log10(trial.suggest_float(name, 1e-5, 1e-1, log=True)) + 3)
        elif i % 4 == 2:
            total += abs(trial.suggest_int(name, 1, 64) - 16) / 64
        else:
            total += _WIDE_CHOICES.index(trial.suggest_categorical(name, _WIDE_CHOICES)) / 3
    return total


@pytest.mark.services
@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_forty_parameter_shared_point_round_trips(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The shared point of a 40-parameter trial (one system attribute of 3.7 kB) is stored
    whole in a TEXT column and read back equal by another connection while the trial runs:
    no chunking is needed on the schemas Optuna >= 4.5 runs on."""
    from optuna_metabo import MetaBOSampler
    from optuna_metabo._vocabulary import SYSTEM_ATTR_SHARED_PARAMS

    spec = make_spec(backend, request, tmp_path)
    names = StudyNames(spec)
    reader = open_storage(spec)  # Another worker's connection.
    seen: list[tuple[str | None, dict[str, Any]]] = []

    def objective(trial: optuna.Trial) -> float:
        value = wide_objective(trial)
        stored = reader.get_trial(trial._trial_id).system_attrs.get(SYSTEM_ATTR_SHARED_PARAMS)
        seen.append((stored, dict(trial.params)))
        return value

    try:
        storage = open_storage(spec)
        sampler = MetaBOSampler(seed=0, n_startup_trials=2, warn_independent_sampling=False)
        study = optuna.create_study(study_name=names("wide"), storage=storage, sampler=sampler)
        study.optimize(objective, n_trials=4)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
        assert study.trials[-1].user_attrs["metabo:source"] == "model"
        # The first trial, with no space known yet, is sampled parameter by parameter.
        assert len(seen) == 4 and seen[0][0] is None
        for stored, params in seen[1:]:
            assert stored is not None and len(stored) > 2048  # the old column limit
            assert json.loads(stored) == params
        schema = "DATABASE()" if backend == "mysql" else "current_schema()"
        with reader.engine.connect() as connection:  # type: ignore[attr-defined]
            column_type = connection.exec_driver_sql(
                "SELECT data_type FROM information_schema.columns WHERE "
                f"table_schema = {schema} AND table_name = 'trial_system_attributes' "
                "AND column_name = 'value_json'"
            ).scalar()
        assert str(column_type).lower() == "text"  # 64 kB on MySQL, unbounded on PostgreSQL
    finally:
        reader.engine.dispose()  # type: ignore[attr-defined]
        names.cleanup()
