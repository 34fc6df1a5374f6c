"""Reading prior studies: globs, directions, usable trials, skip reasons, when to read again.

The storage is only ever read. End-to-end checks through the sampler (bad trial states and
values, the target among its priors) are in ``test_reliability.py``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial
from optuna.trial import TrialState
import pytest

from optuna_metabo._history.prior_studies import PriorLoader
from optuna_metabo._history.storages import open_storage
from optuna_metabo._history.storages import PriorStudyError


X = FloatDistribution(0.0, 1.0)


def _add(study: optuna.Study, x: float, value: float | None, state: TrialState) -> None:
    study.add_trial(
        create_trial(
            params={"x": x},
            distributions={"x": X},
            value=value,
            state=state,
        )
    )


def _checksum(url: str) -> str:
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    digest = hashlib.sha256()
    for summary in storage.get_all_studies():
        for t in storage.get_all_trials(summary._study_id):
            digest.update(repr((t.number, t.state, t.values, t.params, t.user_attrs)).encode())
    return digest.hexdigest()


@pytest.fixture
def history(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    for name, direction in [("bert-imdb", "maximize"), ("bert-sst2", "minimize")]:
        study = optuna.create_study(storage=url, study_name=name, direction=direction)
        for i in range(6):
            _add(study, i / 5, float(i), TrialState.COMPLETE)
        _add(study, 0.5, None, TrialState.FAIL)
        _add(study, 0.5, None, TrialState.PRUNED)
    weird = optuna.create_study(storage=url, study_name="cnn-mnist")
    _add(weird, 0.1, None, TrialState.FAIL)
    optuna.create_study(storage=url, study_name="mo", directions=["minimize", "minimize"])
    return url


def test_glob_resolves_and_directions_are_flipped(history: str) -> None:
    loader = PriorLoader(["bert-*"], history)
    tasks, skipped = loader.load(target_name="new")
    assert [t.name for t in tasks] == ["bert-imdb", "bert-sst2"]
    assert skipped == []
    imdb, sst2 = tasks
    # Maximized prior: values are negated so that lower is better everywhere.
    np.testing.assert_allclose(imdb.values[:, 0], -np.arange(6.0))
    np.testing.assert_allclose(sst2.values[:, 0], np.arange(6.0))
    # Failed and pruned trials are ignored, but counted in the total.
    assert imdb.n_total == 8


def test_names_need_a_storage() -> None:
    with pytest.raises(PriorStudyError, match="prior_storage"):
        PriorLoader(["a"], None)


def test_empty_priors_are_skipped_with_logged_reasons(
    history: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        tasks, skipped = PriorLoader(None, history).load(target_name="bert-sst2")
    assert [t.name for t in tasks] == ["bert-imdb"]
    reasons = {s.name: s.reason for s in skipped}
    assert reasons == {
        "bert-sst2": "it is the target study itself",
        "cnn-mnist": "it has no completed trial with finite values",
        "mo": "it has no completed trial with finite values",
    }
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'cnn-mnist'" in m and "no completed trial" in m for m in logged)


@pytest.mark.skipif(
    not hasattr(optuna.trial.Trial, "set_constraint"),
    reason="trial.set_constraint is new in Optuna 5.0",
)
def test_multi_objective_prior_keeps_every_objective_its_names_and_constraints(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = optuna.create_study(storage=url, study_name="mo", directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency"])
    for i in range(4):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("memory", float(i) - 1.5)
        study.tell(trial, [float(i), 10.0 * i])
    (prior,), _ = PriorLoader(["mo"], url).load(target_name="new")
    assert prior.metric_names == ("accuracy", "latency")
    # Each objective is flipped by its own direction: lower is better in every column.
    np.testing.assert_allclose(prior.values, [[-i, 10.0 * i] for i in range(4)])
    np.testing.assert_allclose(prior.constraints["memory"], np.arange(4.0) - 1.5)


def test_priors_are_read_only(history: str) -> None:
    before = _checksum(history)
    sampler_loader = PriorLoader(None, history)
    sampler_loader.load(target_name="x")
    assert _checksum(history) == before


def test_reload_only_when_a_study_gained_trials(history: str) -> None:
    loader = PriorLoader(["bert-imdb"], history)
    first = loader.load(None)[0][0]
    assert loader.load(None)[0][0] is first
    study = optuna.load_study(study_name="bert-imdb", storage=history)
    _add(study, 0.3, 10.0, TrialState.COMPLETE)
    reloaded = loader.load(None)[0][0]
    assert reloaded is not first and len(reloaded.values) == 7


def test_a_study_read_with_running_trials_is_read_again_when_they_finish(history: str) -> None:
    study = optuna.load_study(study_name="bert-imdb", storage=history)
    running = study.ask({"x": X})
    loader = PriorLoader(["bert-imdb"], history)
    first = loader.load(None)[0][0]
    assert len(first.values) == 6  # the running trial is not usable yet
    study.tell(running, 100.0)  # same number of trials, one more completed
    again = loader.load(None)[0][0]
    assert len(again.values) == 7 and again.values.min() == -100.0  # maximize: sign flipped


def test_finished_priors_are_listed_and_read_once(
    history: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(history)
    calls = {"get_all_studies": 0, "get_all_trials": 0}
    for method in calls:
        original = getattr(storage, method)

        def counted(
            *args: object, _original: Any = original, _m: str = method, **kwargs: object
        ) -> object:
            calls[_m] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(storage, method, counted)
    loader = PriorLoader(["bert-*"], storage)
    for _ in range(5):
        tasks, _ = loader.load("bert-new", storage)
    assert [t.name for t in tasks] == ["bert-imdb", "bert-sst2"]
    # One listing, one read per study, however many trials the sampler runs.
    assert calls == {"get_all_studies": 1, "get_all_trials": 2}
