"""Opening prior storages read-only, naming them in messages and telling them apart.

Nothing here writes: an SQLite or journal file that does not exist is an error (opening it
would create it), and RDB storages are opened without creating tables.
"""

from __future__ import annotations

from collections.abc import Sequence
import fnmatch
import os

import optuna
from optuna.storages import BaseStorage


class PriorStudyError(ValueError):
    """Raised for prior studies or storages that cannot be used, with a message for users."""


def open_storage(storage: str | BaseStorage) -> BaseStorage:
    """Opens a prior storage for reading, with a clear error when that is impossible.

    Args:
        storage: A storage URL (``sqlite:///``, ``postgresql://``, ``mysql+pymysql://``), a path
            to a journal file (``*.log``, ``*.journal``, or ``journal:///path``), or a storage.

    Raises:
        PriorStudyError: If the file does not exist or the database cannot be opened. The
            message names the URL with its password redacted, and the root cause.
    """
    if isinstance(storage, BaseStorage):
        return storage
    if not isinstance(storage, str):
        raise TypeError(f"prior_storage must be a URL or an Optuna storage, not {storage!r}.")
    if storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///") :].split("?")[0]
        if path not in ("", ":memory:") and not os.path.exists(path):
            raise PriorStudyError(f"Prior storage {storage!r}: the file {path!r} does not exist.")
    journal_path = _journal_path(storage)
    if journal_path is not None:
        return _open_journal(journal_path)
    try:
        # pool_pre_ping: a connection that a server restart closed is replaced, not used.
        return optuna.storages.RDBStorage(
            storage, engine_kwargs={"pool_pre_ping": True}, skip_table_creation=True
        )
    except Exception as error:  # Any driver error becomes a message that names the URL.
        cause = _root_cause(error).replace(storage, redact_url(storage))
        raise PriorStudyError(
            f"Cannot open prior storage {redact_url(storage)!r}: {cause}"
        ) from error


def _journal_path(storage: str) -> str | None:
    if storage.startswith("journal:///"):
        return storage[len("journal:///") - 1 :]
    if "://" not in storage and storage.endswith((".log", ".journal", ".jsonl")):
        return storage
    return None


def _open_journal(path: str) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal import JournalStorage

    if not os.path.exists(path):
        raise PriorStudyError(f"Prior journal file {path!r} does not exist.")
    return JournalStorage(JournalFileBackend(path))


def _root_cause(error: BaseException) -> str:
    """The innermost cause's first line, which names the real problem (refused, auth...)."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def redact_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***``, for messages.

    Args:
        url: A storage URL, e.g. ``postgresql://user:secret@host/db``.
    """
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def storage_identity(storage: BaseStorage) -> str:
    """A key equal for two storage objects that open the same database or journal file.

    Args:
        storage: Any Optuna storage, possibly wrapped in Optuna's cache layer.
    """
    # _CachedStorage wraps an RDB storage in ``_backend``; JournalStorage keeps its file or
    # Redis backend there.
    inner = getattr(storage, "_backend", storage)
    url = getattr(inner, "url", None)
    if isinstance(url, str):
        if url.startswith("sqlite:///"):
            return "sqlite:///" + os.path.abspath(url[len("sqlite:///") :].split("?")[0])
        return url
    path = getattr(inner, "_file_path", None)
    if isinstance(path, str):
        return "journal:" + os.path.abspath(path)
    redis_url = getattr(inner, "_url", None)
    if isinstance(redis_url, str):
        return f"redis:{redis_url}|{getattr(inner, '_prefix', '')}"
    if isinstance(inner, optuna.storages.GrpcStorageProxy):
        # Two proxies of one server reach the same database.
        return f"grpc:{getattr(inner, '_host', '')}:{getattr(inner, '_port', '')}"
    return f"object:{id(inner)}"


def resolve_study_names(storage: BaseStorage, patterns: Sequence[str] | None) -> list[str]:
    """Expands names and glob patterns against the studies in a storage.

    Args:
        storage: The prior storage.
        patterns: Study names or glob patterns; None means every study.

    Raises:
        PriorStudyError: If a name or pattern matches nothing. The message lists what exists.
    """
    try:
        available = [s.study_name for s in storage.get_all_studies()]
    except Exception as error:
        raise PriorStudyError(f"Cannot list the studies of the prior storage: {error}") from error
    if patterns is None:
        return sorted(available)
    names: list[str] = []
    for pattern in patterns:
        matches = sorted(fnmatch.filter(available, pattern))
        if not matches:
            listing = ", ".join(sorted(available)) or "(none)"
            raise PriorStudyError(
                f"No prior study matches {pattern!r}. Studies in the prior storage: {listing}."
            )
        names.extend(m for m in matches if m not in names)
    return names
