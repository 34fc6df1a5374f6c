"""Opening prior storages read-only, redacting their URLs and telling them apart.

End-to-end errors through the sampler (missing files, unreachable servers, names that match
nothing) are in ``test_reliability.py``.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal import JournalStorage
import pytest

from optuna_metabo._history.storages import open_storage
from optuna_metabo._history.storages import PriorStudyError
from optuna_metabo._history.storages import redact_url
from optuna_metabo._history.storages import resolve_study_names
from optuna_metabo._history.storages import storage_identity


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user:secret@db:5432/x", "postgresql://***@db:5432/x"),
        ("mysql+pymysql://root@host/db", "mysql+pymysql://***@host/db"),
        ("sqlite:///a.db", "sqlite:///a.db"),
        ("history.log", "history.log"),
    ],
)
def test_credentials_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_same_file_same_identity_whatever_the_path_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    optuna.create_study(storage="sqlite:///a.db")
    relative = open_storage("sqlite:///a.db")
    absolute = open_storage(f"sqlite:///{tmp_path / 'a.db'}")
    assert storage_identity(relative) == storage_identity(absolute)
    other = tmp_path / "b.db"
    optuna.create_study(storage=f"sqlite:///{other}")
    assert storage_identity(open_storage(f"sqlite:///{other}")) != storage_identity(relative)
    journal = tmp_path / "j.log"
    JournalStorage(JournalFileBackend(str(journal)))
    for spelling in ("j.log", f"journal://{journal}"):  # journal:///tmp/...
        assert storage_identity(open_storage(spelling)) == f"journal:{journal}"
    memory = optuna.storages.InMemoryStorage()
    assert storage_identity(memory) == storage_identity(memory)
    assert storage_identity(memory) != storage_identity(optuna.storages.InMemoryStorage())


def test_a_storage_object_is_used_as_is_and_other_types_are_refused() -> None:
    storage = optuna.storages.InMemoryStorage()
    assert open_storage(storage) is storage
    with pytest.raises(TypeError, match="prior_storage must be a URL"):
        open_storage(42)  # type: ignore[arg-type]


def test_names_and_globs_resolve_in_order_without_repeats() -> None:
    storage = optuna.storages.InMemoryStorage()
    for name in ("bert-sst2", "bert-imdb", "cnn-mnist"):
        optuna.create_study(storage=storage, study_name=name)
    assert resolve_study_names(storage, None) == ["bert-imdb", "bert-sst2", "cnn-mnist"]
    assert resolve_study_names(storage, ["cnn-mnist", "bert-*", "bert-imdb"]) == [
        "cnn-mnist",
        "bert-imdb",
        "bert-sst2",
    ]
    with pytest.raises(PriorStudyError, match="Studies in the prior storage: bert-imdb, "):
        resolve_study_names(storage, ["gpt-*"])
