"""16 workers on one PostgreSQL study through Optuna's gRPC storage proxy.

A proxy server (``optuna.storages.run_grpc_proxy_server``) runs in a process of its own in
front of PostgreSQL; 16 worker processes reach the study through ``GrpcStorageProxy`` objects
only, and pass another proxy object as ``prior_storage``. Every requested trial must complete,
no two trials that ran at the same time may share a configuration, and the prior study (read
through the proxy) must be unchanged. gRPC is only used in subprocesses: this test process
never opens a channel, so later tests that fork are not affected.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
import socket
import subprocess
import sys
import time
from typing import Any

import optuna
from optuna.trial import TrialState
import pytest
from test_distributed import assert_no_concurrent_duplicates
from test_distributed import open_storage
from test_distributed import overlapping_pairs
from test_distributed import prior_and_target
from test_distributed import run_workers
from test_distributed import study_checksum
from test_distributed import StudyNames


pytestmark = [pytest.mark.slow, pytest.mark.services]

N_WORKERS = 16
TRIALS_PER_WORKER = 2
SLEEP_S = 0.5
_SERVER_CODE = (
    "import sys, optuna; from optuna.storages import get_storage, run_grpc_proxy_server; "
    "optuna.logging.set_verbosity(optuna.logging.WARNING); "
    "run_grpc_proxy_server(get_storage(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]))"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def grpc_spec(postgres_url: str) -> Iterator[dict[str, Any]]:
    """A gRPC proxy server in front of the PostgreSQL database, as a storage spec."""
    import importlib.util

    if importlib.util.find_spec("grpc") is None:
        pytest.fail("grpcio is not installed: pip install -e '.[test]' (the storages extra).")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER_CODE, postgres_url, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"proxy server ended: {server.stderr.read()!r}"  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the gRPC proxy server did not start"
                time.sleep(0.2)
        yield {"kind": "grpc", "host": "127.0.0.1", "port": port}
    finally:
        server.kill()
        server.wait()


def test_sixteen_workers_through_the_grpc_proxy(
    grpc_spec: dict[str, Any], postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("grpc")
    direct = {"kind": "rdb", "url": postgres_url}
    names = StudyNames(direct)
    try:
        storage = open_storage(direct)
        prior_name, target_name, before = prior_and_target(storage, names)
        configs = [
            {
                "storage": grpc_spec,
                "study": target_name,
                "priors": [prior_name],
                "index": i,
                "n_trials": TRIALS_PER_WORKER,
                "sleep": SLEEP_S,
                "n_workers": N_WORKERS,
                "barrier": str(directory / "barrier"),
            }
            for i in range(N_WORKERS)
        ]
        run_workers(configs, directory)
        fresh = open_storage(direct)
        trials = fresh.get_all_trials(fresh.get_study_id_from_name(target_name))
        assert len(trials) == N_WORKERS * TRIALS_PER_WORKER
        assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
        assert {t.user_attrs["worker"] for t in trials} == set(range(N_WORKERS))
        assert len(overlapping_pairs(trials)) >= N_WORKERS, "workers did not run concurrently"
        assert_no_concurrent_duplicates(trials)
        sources = {t.user_attrs.get("metabo:source") for t in trials}
        assert sources <= {"prior_design", "model", "target_model"}, sources
        assert study_checksum(fresh, prior_name) == before
    finally:
        names.cleanup()


_ALL_PRIORS_CODE = """
import json, sys
import optuna
from optuna.storages import GrpcStorageProxy
from optuna_metabo import MetaBOSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
port, target, tag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sampler = MetaBOSampler(prior_storage=GrpcStorageProxy(host="127.0.0.1", port=port), seed=0)
study = optuna.load_study(
    study_name=target, storage=GrpcStorageProxy(host="127.0.0.1", port=port), sampler=sampler
)
study.optimize(lambda t: (t.suggest_float("x", 0.0, 1.0) - 0.3) ** 2, n_trials=2)
used, skipped = sampler.prior_summary()["used"], sampler.prior_summary()["skipped"]
print(json.dumps({
    "used": [u["study_name"] for u in used if tag in u["study_name"]],
    "skipped": {s["study_name"]: s["reason"] for s in skipped if tag in s["study_name"]},
    "sources": [t.user_attrs["metabo:source"] for t in study.trials],
}))
"""


def test_all_studies_of_a_proxy_as_priors_leave_out_the_target(
    grpc_spec: dict[str, Any], postgres_url: str
) -> None:
    """``prior_storage=GrpcStorageProxy(...)`` without names: every study but the target is a
    prior, although the target was loaded through another proxy object."""
    direct = {"kind": "rdb", "url": postgres_url}
    names = StudyNames(direct)
    try:
        storage = open_storage(direct)
        prior_name, target_name = names("prior"), names("target")
        prior = optuna.create_study(study_name=prior_name, storage=storage)
        prior.optimize(lambda t: (t.suggest_float("x", 0.0, 1.0) - 0.35) ** 2, n_trials=8)
        optuna.create_study(study_name=target_name, storage=storage)
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _ALL_PRIORS_CODE,
                str(grpc_spec["port"]),
                target_name,
                names.tag,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-4000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["used"] == [prior_name]
        assert result["skipped"] == {target_name: "it is the target study itself"}
        assert result["sources"] == ["prior_design", "prior_design"]
    finally:
        names.cleanup()
