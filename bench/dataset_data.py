"""The dataset benchmark's stores: the same generated captures in a SQLite file and in a
PostgreSQL database, made once and kept.

The rows come from the curation benchmark's generator (single questions with duplicates,
multi-turn chats and tool flows, edits and feedback), ending at a fixed moment, so every run
of a given size holds the same rows. PostgreSQL is filled by ``COPY`` as the curation bench
does; SQLite through ``insert_captures``, the capture writer's own statement. A marker (the
table's comment; a file beside the SQLite database) lets later runs reuse both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from sqlalchemy import Engine, insert, text

import storage
from bench import curation_data
from bench.postgres import ADMIN_CONNINFO
from storage._models import CaptureEdit, Feedback

DATABASE = "stillroom_bench_dataset"
URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"
CONNINFO = f"host=127.0.0.1 port=5432 user=postgres dbname={DATABASE} connect_timeout=5"
END = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
"""The newest capture's moment: fixed, so two runs of one size generate the same rows."""


@dataclass(frozen=True)
class Stores:
    sqlite_url: str
    postgres_url: str
    rows: int
    reused: bool
    load_s: float


def _marker(rows: int) -> str:
    return (
        f"stillroom bench dataset data v{curation_data.DATA_VERSION}: {rows} captures, "
        f"seed {curation_data.SEED}, end {END:.0f}, revision {storage.head_revision()}"
    )


def sqlite_path(directory: Path, rows: int) -> Path:
    return directory / f"dataset-bench-{rows}.db"


def _kept(path: Path, rows: int) -> bool:
    marker = path.with_suffix(".marker")
    if not path.exists() or not marker.exists() or marker.read_text() != _marker(rows):
        return False
    try:
        with psycopg.connect(CONNINFO) as connection:
            found = connection.execute(
                "SELECT obj_description('captures'::regclass, 'pg_class')"
            ).fetchone()
    except psycopg.Error:
        return False
    return found is not None and found[0] == _marker(rows)


def ensure(
    rows: int, directory: Path, *, regenerate: bool, say: Callable[[str], None] = print
) -> Stores:
    """Both stores with ``rows`` captures: kept when they match, made (again) otherwise."""
    started = time.monotonic()
    path = sqlite_path(directory, rows)
    sqlite_url = f"sqlite:///{path}"
    if not regenerate and _kept(path, rows):
        say(f"  reusing {path.name} and {DATABASE}: {rows:,} captures")
        return Stores(sqlite_url, URL, rows, True, time.monotonic() - started)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_suffix(".marker"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as admin:
        name = sql.Identifier(DATABASE)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    engines = storage.make_engine(sqlite_url), storage.make_engine(URL)
    try:
        for engine in engines:
            storage.upgrade(engine)
        say(f"  generating {rows:,} captures into {path.name} and {DATABASE} ...")
        _fill(rows, engines[0], say)
    finally:
        for engine in engines:
            engine.dispose()
    with psycopg.connect(CONNINFO, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) captures, feedback, capture_edits")
    path.with_suffix(".marker").write_text(_marker(rows))
    seconds = time.monotonic() - started
    say(f"  loaded in {seconds:.0f} s")
    return Stores(sqlite_url, URL, rows, False, seconds)


def _fill(rows: int, sqlite_engine: Engine, say: Callable[[str], None]) -> None:
    generator = curation_data.Generator(rows, END)

    def teed() -> Iterator[list[dict[str, Any]]]:
        for window in generator.windows():
            window = curation_data.with_search_text(window)
            with storage.session_scope(sqlite_engine) as session:
                storage.insert_captures(window, session=session)
            yield window

    with psycopg.connect(CONNINFO) as connection:
        curation_data.copy_in(connection, generator, teed(), say)
        connection.execute(
            sql.SQL("COMMENT ON TABLE captures IS {}").format(sql.Literal(_marker(rows)))
        )
    edits = [dict(zip(curation_data.EDIT_COLUMNS, row, strict=True)) for row in generator.edits]
    feedback = [
        dict(zip(curation_data.FEEDBACK_COLUMNS, row, strict=True)) for row in generator.feedback
    ]
    # The generator keeps these as JSON text for COPY; the tables' JSON type wants values.
    for edit in edits:
        edit["message"] = orjson.loads(edit["message"])
    for entry in feedback:
        entry["corrected"] = orjson.loads(entry["corrected"]) if entry["corrected"] else None
    with sqlite_engine.begin() as sqlite:
        if edits:
            sqlite.execute(insert(CaptureEdit.__table__), edits)  # type: ignore[attr-defined]
        if feedback:
            sqlite.execute(insert(Feedback.__table__), feedback)  # type: ignore[attr-defined]
        sqlite.execute(text("ANALYZE"))
