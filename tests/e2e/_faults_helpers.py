"""Shared pieces of the fault, shutdown and secrets tests: a store reader, outages, the CLI.

Every outage here is real: PostgreSQL is told to refuse connections and its backends are
terminated; SQLite really refuses inserts because the captures table is renamed away.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from storage import Capture, count_captures, get_capture, list_capture_summaries, make_engine
from storage import session_scope as _session_scope
from tests.replay import Interaction, recording
from tests.support import PG_ADMIN_URL, STILLROOM, ServerProcess

MODEL = "gpt-3.5-turbo"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello!"}]
"""The request both recordings were made with, so the replay server matches it exactly."""
CHAT_ANSWER = "Hi there! How can I assist you today?"
STREAM_ANSWER = "Hello! How can I assist you today?"
CHAT_PATH = "/v1/chat/completions"


def chat_recordings() -> list[Interaction]:
    """A non-streaming and a streaming answer to ``MESSAGES``."""
    return recording("chat/ruby_chat_gpt35.yml") + recording("stream/ruby_chat_stream_basic.yml")


def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgres")


class Store:
    """Reads what the server stored, through ``storage``, as an operator would."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def count(self) -> int:
        with _session_scope(self.engine) as session:
            return count_captures(session=session)

    def newest(self, limit: int = 1) -> list[Capture]:
        """The newest captures, newest first (ids are time-ordered)."""
        with _session_scope(self.engine) as session:
            summaries = list_capture_summaries(session=session, limit=limit)
            found = [get_capture(str(s["id"]), session=session) for s in summaries]
            return [capture for capture in found if capture is not None]


def content_of(capture: Capture) -> str | None:
    """The assistant text the capture holds (reconstructed for streams)."""
    assert capture.response is not None, capture
    content = capture.response["choices"][0]["message"]["content"]
    assert content is None or isinstance(content, str)
    return content


def metric(server: ServerProcess, name: str) -> float:
    """One unlabelled sample of the Prometheus text at /metrics; 0 when absent."""
    text = httpx.get(server.base_url + "/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def spool_files(workdir: Path) -> list[Path]:
    return sorted((workdir / "spool").glob("spool-*.jsonl"))


def spool_lines(workdir: Path) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in spool_files(workdir))


def spool_bytes(workdir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in spool_files(workdir))


def _pg_name(database_url: str) -> str:
    name = make_url(database_url).database
    assert name, database_url
    return name


def _psycopg_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_path(database_url: str) -> str:
    path = make_url(database_url).database
    assert path, database_url
    return path


@contextmanager
def database_refusing(database_url: str) -> Iterator[None]:
    """The database refuses the server's writes until the block ends.

    PostgreSQL: connections are refused (``ALLOW_CONNECTIONS false``) and every live backend
    is terminated, as when the server is restarted or unreachable. SQLite has no such switch,
    so the captures table is renamed away: every insert then fails with "no such table".
    """
    if is_postgres(database_url):
        name = _pg_name(database_url)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        try:
            yield
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        return
    connection = sqlite3.connect(_sqlite_path(database_url), timeout=30)
    try:
        connection.execute("ALTER TABLE captures RENAME TO captures_away")
        connection.commit()
        try:
            yield
        finally:
            connection.execute("ALTER TABLE captures_away RENAME TO captures")
            connection.commit()
    finally:
        connection.close()


@contextmanager
def captures_locked(database_url: str) -> Iterator[None]:
    """Another session holds an exclusive lock, so the server's inserts wait (slow database)."""
    if is_postgres(database_url):
        with psycopg.connect(_psycopg_url(database_url)) as locker:
            locker.execute("LOCK TABLE captures IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                locker.rollback()
        return
    connection = sqlite3.connect(_sqlite_path(database_url), timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
    finally:
        connection.close()


def dump_database(database_url: str) -> bytes:
    """Everything the store holds, as bytes to search: the SQLite files or every PG table."""
    if not is_postgres(database_url):
        path = Path(_sqlite_path(database_url))
        parts = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        return b"".join(part.read_bytes() for part in parts if part.exists())
    chunks: list[str] = []
    with psycopg.connect(_psycopg_url(database_url)) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert tables
        for (table,) in tables:
            chunks.append(str(table))
            for (row,) in connection.execute(f'SELECT t::text FROM "{table}" t').fetchall():
                chunks.append(str(row))
    return "\n".join(chunks).encode()


def _cli_environment(database_url: str) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STILLROOM_", "OPENAI_"))
    }
    environment["STILLROOM_DATABASE_URL"] = database_url
    return environment


def create_stillroom_key(database_url: str, name: str, workdir: Path) -> tuple[str, str]:
    """``stillroom keys create NAME``, as an operator runs it: returns (key id, secret)."""
    done = subprocess.run(
        [STILLROOM, "keys", "create", name],
        env=_cli_environment(database_url),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    fields: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        label, _, value = line.partition(":")
        fields[label.strip()] = value.strip()
    return str(fields["id"]), str(fields["secret"])


def eventually(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Like ``wait_for``, but answers whether it held, for tests that clean up first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
