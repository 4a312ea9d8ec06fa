"""Engines and sessions. Nothing is created at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlmodel import Session


def normalise_url(url: str) -> str:
    """Pick our drivers: psycopg 3 for PostgreSQL, whatever the caller wrote."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def json_text(value: Any) -> str:
    """``value`` as the JSON text the engines store (orjson, no U+0000 on PostgreSQL)."""
    return _json_dumps(value)


def _json_dumps(value: Any) -> str:
    text = orjson.dumps(value)
    # PostgreSQL's JSONB cannot hold U+0000; a search of the bytes keeps the walk off the
    # common path (a literal backslash-u0000 matches too, and comes out unchanged).
    if b"\\u0000" in text:
        text = orjson.dumps(without_nul(value))
    return text.decode()


def without_nul(value: Any) -> Any:
    """``value`` with U+0000 removed from every string in it, keys included: PostgreSQL
    refuses the character in text and JSON, so no store holds it."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(item) for item in value]
    return value


def make_engine(
    url: str, *, pool_size: int = 5, statement_timeout_seconds: float | None = None
) -> Engine:
    """An engine for ``url``; with ``statement_timeout_seconds``, a statement that waits
    longer (on a lock, a stalled server) fails instead of blocking its caller."""
    url = normalise_url(url)
    # orjson: JSON columns are most of a capture, and the stdlib encoder holds the GIL
    # many times longer, which the event loop feels as latency.
    json_options: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "json_deserializer": orjson.loads,
    }
    if url.startswith("sqlite"):
        busy = statement_timeout_seconds if statement_timeout_seconds is not None else 30.0
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy}, **json_options
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No server-side prepared statements: after five runs of one, PostgreSQL may keep a
    # generic plan, blind to the values a filter compares with (a tag three rows have, a
    # metadata value a third of them have), and the curation pages filter on exactly those.
    # Each statement is planned for its own values instead, and a pooler in transaction mode
    # (PgBouncer) never sees a prepared statement it would have to track.
    connect_args: dict[str, Any] = {"connect_timeout": 5, "prepare_threshold": None}
    if statement_timeout_seconds is not None:
        milliseconds = int(statement_timeout_seconds * 1000)
        connect_args["options"] = (
            f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}"
        )
    return create_engine(
        url, pool_size=pool_size, pool_pre_ping=True, connect_args=connect_args, **json_options
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (stored-completions calls) run while the capture writer commits.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # SQLite ignores ON DELETE CASCADE unless told: edits and feedback go with their capture.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextmanager
def session_scope(engine: Engine | Connection) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error. On a ``Connection`` the
    session begins and ends its own transaction on that connection."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# What a database that is down, restarting, stalled or out of connections raises; anything
# else the driver raises is the database refusing this statement's data.
_UNREACHABLE = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
)


# PostgreSQL's "undefined table": a database that answers before it is migrated is not ready,
# just as SQLite's "no such table" (an OperationalError) says.
_NOT_MIGRATED = "42P01"


def database_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be asked now (retry later), as opposed to
    a refusal of what was asked (retrying the same statement would fail again)."""
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if getattr(error.orig, "sqlstate", None) == _NOT_MIGRATED:
            return True
    return isinstance(error, _UNREACHABLE)
