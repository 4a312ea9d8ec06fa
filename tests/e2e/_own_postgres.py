"""A PostgreSQL server of a test's own, to stop and start as an outage drill needs.

The shared server on 5432 is never touched: ``initdb`` makes a cluster in a temporary folder
and ``pg_ctl`` runs it on a free port (as the ``postgres`` user when the tests run as root,
since PostgreSQL refuses to run as root). Skipped where no PostgreSQL binaries are installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.support import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class OwnPostgres:
    def __init__(self, bin_dir: Path, data_dir: Path, port: int, as_user: str | None) -> None:
        self._bin = bin_dir
        self.data_dir = data_dir
        self.port = port
        self._as_user = as_user

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if self._as_user is not None:
            command = ["runuser", "-u", self._as_user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def initdb(self) -> None:
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1"
        log = str(self.data_dir / "server.log")
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: every session is cut, as when the server is restarted."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        try:
            with psycopg.connect(
                f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2
            ):
                return True
        except psycopg.OperationalError:
            return False


@contextmanager
def own_postgres(*, started: bool = True) -> Iterator[OwnPostgres]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) to run a server of the test's own")
    as_user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="stillroom-pg-"))
    data_dir = root / "data"
    data_dir.mkdir()
    if as_user is not None:
        root.chmod(0o755)
        shutil.chown(data_dir, user=as_user)
        data_dir.chmod(0o700)
    server = OwnPostgres(bin_dir, data_dir, free_port(), as_user)
    try:
        server.initdb()
        if started:
            server.start()
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
