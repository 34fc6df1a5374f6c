from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial
from optuna.trial import TrialState
import pytest

from optuna_metabo._priors import encode_task
from optuna_metabo._priors import EncodedPrior
from optuna_metabo._priors import open_storage
from optuna_metabo._priors import PriorLoader
from optuna_metabo._priors import PriorStudyError
from optuna_metabo._priors import SkippedPrior
from optuna_metabo._priors import subsample_indices
from optuna_metabo._search_space import SearchSpace


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
    np.testing.assert_allclose(imdb.values, -np.arange(6.0))
    np.testing.assert_allclose(sst2.values, np.arange(6.0))
    # Failed and pruned trials are ignored, but counted in the total.
    assert imdb.n_total == 8


def test_unknown_name_lists_available_studies(history: str) -> None:
    with pytest.raises(PriorStudyError, match="bert-imdb, bert-sst2, cnn-mnist, mo"):
        PriorLoader(["resnet-*"], history).load(target_name=None)


def test_missing_sqlite_file_is_a_clear_error_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nope.db"
    with pytest.raises(PriorStudyError, match="does not exist"):
        open_storage(f"sqlite:///{path}")
    assert not path.exists()


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(PriorStudyError, match="Cannot open prior storage"):
        open_storage("postgresql://nobody@127.0.0.1:1/none")


def test_names_need_a_storage() -> None:
    with pytest.raises(PriorStudyError, match="prior_storage"):
        PriorLoader(["a"], None)


def test_multi_objective_and_empty_priors_are_skipped_with_reasons(history: str) -> None:
    tasks, skipped = PriorLoader(None, history).load(target_name="bert-sst2")
    assert [t.name for t in tasks] == ["bert-imdb"]
    reasons = {s.name: s.reason for s in skipped}
    assert "target study itself" in reasons["bert-sst2"]
    assert "multi-objective" in reasons["mo"]
    assert "no completed trial" in reasons["cnn-mnist"]


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


def test_encode_task_handles_bounds_choices_and_missing_params(history: str) -> None:
    task = PriorLoader(["bert-imdb"], history).load(None)[0][0]
    narrow = SearchSpace({"x": FloatDistribution(0.0, 0.5)})
    encoded = encode_task(task, narrow, 100, np.random.RandomState(0))
    assert isinstance(encoded, EncodedPrior)
    # x in {0, .2, .4, .6} fit in [0, 0.5] with the 0.25 margin (0.6 -> 1.2); 0.8 and 1.0 do not.
    assert len(encoded.y) == 4
    grown = SearchSpace({"x": X, "extra": CategoricalDistribution(["a", "b"])})
    used = encode_task(task, grown, 100, np.random.RandomState(0))
    assert isinstance(used, EncodedPrior) and used.match.lacked == {"extra": "unknown"}
    assert np.isnan(used.x[:, grown.columns_of("extra")]).all()
    assert list(used.unknown_columns) == list(grown.columns_of("extra"))
    too_little = SearchSpace(
        {"x": X, "extra": CategoricalDistribution(["a", "b"]), "more": FloatDistribution(0, 1)}
    )
    skipped = encode_task(task, too_little, 100, np.random.RandomState(0))
    assert (
        isinstance(skipped, SkippedPrior) and "shares only 1 of the target's 3" in skipped.reason
    )
    kind = SearchSpace({"x": CategoricalDistribution(["low", "high"])})
    mismatch = encode_task(task, kind, 100, np.random.RandomState(0))
    assert isinstance(mismatch, SkippedPrior) and "shares only 0" in mismatch.reason


@given(
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60, unique=True),
    st.integers(1, 59),
)
@settings(max_examples=60, deadline=None)
def test_subsampling_is_prefix_stable_and_keeps_the_best_half(
    values: list[float], cap: int
) -> None:
    y = np.array(values)
    keep = subsample_indices(y, cap, np.random.RandomState(0))
    assert len(keep) == min(cap, len(y)) and len(set(keep.tolist())) == len(keep)
    best = np.argsort(y)[: math.ceil(min(cap, len(y)) / 2)]
    assert set(best.tolist()) <= set(keep.tolist())
    # One point fewer keeps a subset of the same rows: a refit sees almost the same data.
    smaller = subsample_indices(y, cap - 1, np.random.RandomState(0)) if cap > 1 else keep[:0]
    assert set(smaller.tolist()) <= set(keep.tolist())


def test_duplicates_are_merged_and_subsampling_prefers_the_best() -> None:
    y = np.array([5.0, 1.0, 3.0, 0.0, 4.0, 2.0, 6.0, 7.0])
    keep = subsample_indices(y, 4, np.random.RandomState(0))
    assert len(keep) == 4 and {3, 1} <= set(keep.tolist())
    study = optuna.create_study()
    for _ in range(1000):
        _add(study, 0.5, 1.0, TrialState.COMPLETE)
    _add(study, 0.1, 3.0, TrialState.COMPLETE)
    task = PriorLoader([study], None).load(None)[0][0]
    encoded = encode_task(task, SearchSpace({"x": X}), 100, np.random.RandomState(0))
    assert isinstance(encoded, EncodedPrior)
    assert len(encoded.y) == 2 and math.isclose(float(encoded.y.min()), 1.0)
