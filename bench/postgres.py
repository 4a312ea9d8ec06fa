"""A throw-away PostgreSQL database for the benchmark, and the server's CPU use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from bench import procstat

ADMIN_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"
BENCH_DATABASE = "stillroom_bench"
BENCH_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{BENCH_DATABASE}"


@dataclass(frozen=True)
class PostgresInfo:
    version: str
    postmaster_pid: int | None
    """The server's root process, when this machine runs it (for its CPU time)."""


def create_fresh_database() -> PostgresInfo:
    """Drop and recreate the benchmark database. Raises psycopg.Error when unreachable."""
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as connection:
        version_row = connection.execute("SHOW server_version").fetchone()
        data_row = connection.execute("SHOW data_directory").fetchone()
        name = sql.Identifier(BENCH_DATABASE)
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
    version = str(version_row[0]) if version_row else "?"
    postmaster = _postmaster_pid(Path(str(data_row[0]))) if data_row else None
    return PostgresInfo(version=version, postmaster_pid=postmaster)


def drop_database() -> str | None:
    """Drop the benchmark database; the error text when that failed."""
    try:
        with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as connection:
            name = sql.Identifier(BENCH_DATABASE)
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    except psycopg.Error as error:
        return str(error).strip()
    return None


def _postmaster_pid(data_directory: Path) -> int | None:
    try:
        first_line = (data_directory / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first_line)
    except (OSError, IndexError, ValueError):
        return None
    return pid if procstat.process_tree(pid) else None
