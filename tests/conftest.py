"""Shared fixtures: a migrated store on SQLite and on PostgreSQL, and a running server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

from storage import make_engine, upgrade
from tests.support import PG_ADMIN_URL, pg_available

_PG_SKIP_REASON = "PostgreSQL is not reachable on 127.0.0.1:5432 (run `make postgres`)"


def _fresh_pg_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """One migrated PostgreSQL database for the session; tables are emptied per test."""
    if not pg_available():
        pytest.skip(_PG_SKIP_REASON)
    name = f"stillroom_test_{os.getpid()}"
    url = _fresh_pg_database(name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    _drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty store: each test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'stillroom.db'}"
        engine = make_engine(sqlite_url)
        upgrade(engine)
        engine.dispose()
        return sqlite_url
    pg_url: str = request.getfixturevalue("pg_database_url")
    engine = make_engine(pg_url)
    with engine.begin() as connection:
        # Every table the models know, so a new table never leaks rows between tests.
        tables = ", ".join(table.name for table in SQLModel.metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()
    return pg_url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Read from the skip reports, not a global: under xdist the skips happen in the workers.
    skipped = terminalreporter.stats.get("skipped", [])
    if any(_PG_SKIP_REASON in str(getattr(report, "longrepr", "")) for report in skipped):
        bar = "#" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(
            "## PostgreSQL was NOT available: every PostgreSQL test was SKIPPED.",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(bar, red=True, bold=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated store of its own, for a migration's test to fill at a revision."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'unmigrated.db'}"
        return
    if not pg_available():
        pytest.skip(_PG_SKIP_REASON)
    name = f"stillroom_unmigrated_{os.getpid()}"
    yield _fresh_pg_database(name)
    _drop_pg_database(name)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty, unmigrated store for one module's server (``serve`` migrates it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('serverdb') / 'stillroom.db'}"
        return
    if not pg_available():
        pytest.skip(_PG_SKIP_REASON)
    module = request.module.__name__.rsplit(".", 1)[-1]
    name = f"stillroom_e2e_{os.getpid()}_{module}"[:63]
    yield _fresh_pg_database(name)
    _drop_pg_database(name)
