"""Data access for captures: plain functions over a session."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from functools import cache
from typing import Any, Literal

import psycopg
from psycopg import sql
from sqlalchemy import JSON, Connection, Dialect, String, func, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from storage._engine import json_text
from storage._models import Capture, UTCDateTime, as_utc
from storage._search import search_text

Order = Literal["asc", "desc"]


def insert_captures(rows: Sequence[Mapping[str, Any]], *, session: Session) -> int:
    """Insert rows, skipping ids already stored, so a replayed spool never duplicates."""
    if not rows:
        return 0
    connection = session.connection()
    table = Capture.__table__  # type: ignore[attr-defined]
    values = [_to_columns(row) for row in rows]
    if connection.dialect.name == "postgresql":
        copied = _copy_new(values, session)
        if copied is not None:
            return copied
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=["id"])
        return len(session.execute(stmt.returning(table.c.id), values).all())
    if connection.dialect.name != "sqlite":  # pragma: no cover - only two stores are supported
        return _rowcount(session.execute(insert(table), values))
    _hold_write_lock(session)
    indexed_up_to = _last_rowid(session)
    inserted = _sqlite_insert(connection.dialect, values[0].keys()).execute(connection, values)
    # One statement per batch indexes the new rows for search at about a quarter of what a
    # trigger per row costs (migration 0011); this transaction holds the write lock since
    # before it read the last rowid, so the rows past it are exactly this batch's.
    session.execute(_INDEX_NEW_ROWS, {"after": indexed_up_to})
    return max(inserted, 0)


def _rowcount(result: Any) -> int:
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


class _SQLiteInsert:
    """``INSERT ... ON CONFLICT (id) DO NOTHING`` of every column, compiled once, each value
    bound by its column's own processor: the rows reach ``executemany`` as SQLAlchemy would send
    them, without its per-row bookkeeping (a quarter of a capture's cost in the writer)."""

    def __init__(self, dialect: Dialect, keys: Collection[str]) -> None:
        table = Capture.__table__  # type: ignore[attr-defined]
        columns = {c.key: c for c in table.columns}
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=["id"])
        # As SQLAlchemy does: the columns the rows name, and those with a default of their own;
        # the database's defaults fill the rest.
        named = [k for k in columns if k in keys or _scalar_default(columns[k]) is not None]
        compiled = stmt.compile(dialect=dialect, column_keys=named)
        assert compiled.positiontup is not None, "sqlite3 binds by position"
        self._sql = compiled.string
        names = list(compiled.positiontup)
        self._names = names
        # What SQLAlchemy does per value, done only where it changes something: the columns
        # with a default of their own, and those whose type converts the value (JSON, times,
        # booleans, floats); every other value is bound as it is.
        self._defaults = [
            (index, name, default)
            for index, name in enumerate(names)
            if (default := _scalar_default(columns[name])) is not None
        ]
        self._processors = [
            (index, process)
            for index, name in enumerate(names)
            if (process := columns[name].type.dialect_impl(dialect).bind_processor(dialect))
            is not None
        ]

    def execute(self, connection: Connection, rows: list[dict[str, Any]]) -> int:
        """Insert ``rows`` in one ``executemany``; how many were new."""
        parameters = [self._parameters(row) for row in rows]
        return connection.exec_driver_sql(self._sql, parameters).rowcount

    def _parameters(self, row: dict[str, Any]) -> tuple[Any, ...]:
        values = list(map(row.get, self._names))
        for index, name, default in self._defaults:
            if values[index] is None and name not in row:
                values[index] = default
        for index, process in self._processors:
            values[index] = process(values[index])
        return tuple(values)


def _unchanged(value: Any) -> Any:
    return value


def _scalar_default(column: Any) -> Any:
    """What an insert without this column's key stores: its default, as SQLAlchemy applies it."""
    default = column.default
    return default.arg if default is not None and default.is_scalar else None


_SQLITE_INSERTS: dict[frozenset[str], _SQLiteInsert] = {}


def _sqlite_insert(dialect: Dialect, keys: Collection[str]) -> _SQLiteInsert:
    # Every SQLite engine binds alike: one plan per set of keys (the writer's rows have one).
    wanted = frozenset(keys)
    plan = _SQLITE_INSERTS.get(wanted)
    if plan is None:
        plan = _SQLITE_INSERTS[wanted] = _SQLiteInsert(dialect, wanted)
    return plan


def _copy_new(values: list[dict[str, Any]], session: Session) -> int | None:
    """COPY the rows whose ids are not stored yet; None when they must be inserted instead.

    COPY takes half the writer's time of a many-row INSERT (no statement of thousands of
    parameters to build and parse), but knows no ON CONFLICT: ids a replayed spool already
    stored are left out first. Should the copy fail (another writer stored one of the rest
    meanwhile, a row the database refuses, the connection lost), it is undone to its savepoint
    and the batch inserted the other way, whose errors the writer knows how to read.
    """
    columns = list(values[0])
    if any(row.keys() != values[0].keys() for row in values):
        return None
    ids = [row["id"] for row in values]
    stored = set(
        session.execute(
            text("SELECT id FROM captures WHERE id = ANY(CAST(:ids AS varchar[]))"), {"ids": ids}
        ).scalars()
    )
    fresh = [row for row in values if row["id"] not in stored]
    if not fresh:
        return 0
    # Only the JSON and time columns need converting: the rest go to COPY as they are.
    convert = [
        (index, to)
        for index, name in enumerate(columns)
        if (to := _copy_converter(name)) is not _unchanged
    ]
    statement = sql.SQL("COPY captures ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    driver = session.connection().connection.driver_connection
    assert driver is not None
    try:
        # Inside the session's transaction, psycopg's transaction() is a savepoint.
        with driver.transaction(), driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in fresh:
                line = list(map(row.__getitem__, columns))
                for index, to in convert:
                    line[index] = to(line[index])
                copy.write_row(line)
    except psycopg.Error:
        # Undone to the savepoint; the INSERT tells a refused row from a database that is
        # gone, as the writer expects (another writer's id, here, it simply skips).
        return None
    return len(fresh)


@cache
def _copy_converter(name: str) -> Any:
    """What COPY is given for a value of column ``name``: the JSON text the engine would
    send, an aware timestamp, or the value as it is."""
    column_type = Capture.__table__.c[name].type  # type: ignore[attr-defined]
    if isinstance(column_type, JSON):
        return _json_or_null
    if isinstance(column_type, UTCDateTime):
        return as_utc
    return _unchanged


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json_text(value)


_INDEX_NEW_ROWS = text(
    "INSERT INTO captures_search(rowid, search_text)"
    " SELECT rowid, search_text FROM captures WHERE rowid > :after"
)


def _hold_write_lock(session: Session) -> None:
    """Take SQLite's write lock now, waiting for it as long as the busy timeout allows.

    The driver opens a transaction only at the first insert, so the last rowid would be read
    outside it: another process (a second ``serve`` worker) could add rows in between, which
    both would then index, and the search index would no longer match the table."""
    driver_connection = session.connection().connection.driver_connection
    if not getattr(driver_connection, "in_transaction", True):
        session.execute(text("BEGIN IMMEDIATE"))


def _last_rowid(session: Session) -> int:
    found = session.execute(text("SELECT coalesce(max(rowid), 0) FROM captures")).scalar_one()
    return int(found)


def _to_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    # The table's column is "metadata"; the model attribute is metadata_.
    values = dict(row)
    if "metadata_" in values:
        values["metadata"] = values.pop("metadata_")
    if "search_text" not in values:
        values["search_text"] = search_text(values.get("request"), values.get("response"))
    for name, length in _text_columns():
        value = values.get(name)
        # Most values fit as they are: the two tests before a copy is made.
        if isinstance(value, str) and (
            (length is not None and len(value) > length) or "\x00" in value
        ):
            values[name] = fit_text(value, length)
    return values


def fit_text(value: str, length: int | None) -> str:
    """``value`` as a text column can hold it: without U+0000 (PostgreSQL refuses it) and
    cut to the column's length. The request and response JSON keep the value in full."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if length is not None and len(value) > length:
        value = value[:length]
    return value


@cache
def _text_columns() -> tuple[tuple[str, int | None], ...]:
    table = Capture.__table__  # type: ignore[attr-defined]
    return tuple(
        (column.name, getattr(column.type, "length", None))
        for column in table.columns
        if isinstance(getattr(column.type, "impl", column.type), String)
    )


def count_captures(*, session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(Capture)).one())


def get_capture(capture_id: str, *, session: Session) -> Capture | None:
    return session.get(Capture, capture_id)


def get_capture_by_completion_id(
    completion_id: str,
    *,
    session: Session,
    api_key_id: str | None = None,
    api: str | None = None,
) -> Capture | None:
    """The newest capture of that completion (or response) id; of ``api`` only, when given."""
    stmt = select(Capture).where(Capture.completion_id == completion_id)
    if api is not None:
        stmt = stmt.where(Capture.api == api)
    if api_key_id is not None:
        stmt = stmt.where(Capture.api_key_id == api_key_id)
    return session.exec(stmt.order_by(col(Capture.id).desc()).limit(1)).first()


def list_stored_completions(
    *,
    session: Session,
    api_key_id: str | None,
    model: str | None = None,
    metadata: Mapping[str, str] | None = None,
    after: str | None = None,
    limit: int = 20,
    order: Order = "asc",
    api: str = "chat",
) -> tuple[list[Capture], bool]:
    """Captures of ``api`` with a completion, newest or oldest first, and whether more follow.

    ``after`` is a completion id, as in OpenAI's API; it is resolved to the capture's id,
    which orders captures by arrival.
    """
    stmt = select(Capture).where(col(Capture.completion_id).is_not(None), Capture.api == api)
    if api_key_id is not None:
        stmt = stmt.where(Capture.api_key_id == api_key_id)
    if model is not None:
        stmt = stmt.where(Capture.requested_model == model)
    for key, value in (metadata or {}).items():
        stmt = stmt.where(Capture.metadata_[key].as_string() == value)
    if after is not None:
        anchor = get_capture_by_completion_id(
            after, session=session, api_key_id=api_key_id, api=api
        )
        if anchor is None:
            return [], False
        id_col = col(Capture.id)
        stmt = stmt.where(id_col > anchor.id if order == "asc" else id_col < anchor.id)
    ordering = col(Capture.id).asc() if order == "asc" else col(Capture.id).desc()
    rows = list(session.exec(stmt.order_by(ordering).limit(limit + 1)).all())
    return rows[:limit], len(rows) > limit


def update_capture_metadata(
    capture: Capture, metadata: Mapping[str, str], *, session: Session
) -> Capture:
    capture.metadata_ = dict(metadata)
    session.add(capture)
    session.flush()
    return capture


def delete_capture(capture: Capture, *, session: Session) -> None:
    session.delete(capture)
    session.flush()


# What a list shows of a capture: never the request or response bodies.
SUMMARY_COLUMNS = (
    "id",
    "completion_id",
    "created_at",
    "status_code",
    "error_kind",
    "requested_model",
    "alias",
    "served_model",
    "stream",
    "abandoned",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "total_ms",
    "api_key_id",
    "metadata",
    "review_status",
    "tags",
    "rating",
    "feedback",
    "has_tool_calls",
    "prompt_hash",
    "api",
)


def list_capture_summaries(
    *, session: Session, before: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest first, without request or response bodies."""
    table = Capture.__table__  # type: ignore[attr-defined]
    stmt = select(*(table.c[name] for name in SUMMARY_COLUMNS))
    if before is not None:
        stmt = stmt.where(table.c.id < before)
    stmt = stmt.order_by(table.c.id.desc()).limit(limit)
    return [dict(row._mapping) for row in session.execute(stmt)]
