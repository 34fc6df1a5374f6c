"""Shared fixtures: URLs of the database servers that the ``services`` tests need.

Each fixture checks that its server answers and fails the test with a clear message when it does
not; it never skips, so a CI run without the servers is red, not silently green. The URLs can be
overridden with ``METABO_TEST_POSTGRES_URL``, ``METABO_TEST_MYSQL_URL`` and
``METABO_TEST_REDIS_URL``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _require(kind: str, url: str, check: Any) -> str:
    try:
        check()
    except Exception as error:  # Any driver or socket error means "not usable here".
        pytest.fail(
            f"The {kind} server at {url} is required by this test but is not usable "
            f"({type(error).__name__}: {error}). Start it, or point "
            f"METABO_TEST_{kind.upper()}_URL at one.",
            pytrace=False,
        )
    return url


def _check_sqlalchemy(url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A SQLAlchemy URL of a reachable PostgreSQL database."""
    url = os.environ.get("METABO_TEST_POSTGRES_URL", POSTGRES_URL)
    return _require("postgres", url, lambda: _check_sqlalchemy(url))


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """A SQLAlchemy URL of a reachable MySQL or MariaDB database."""
    url = os.environ.get("METABO_TEST_MYSQL_URL", MYSQL_URL)
    return _require("mysql", url, lambda: _check_sqlalchemy(url))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A URL of a reachable Redis server."""
    url = os.environ.get("METABO_TEST_REDIS_URL", REDIS_URL)

    def check() -> None:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=5).ping()

    return _require("redis", url, check)
