"""Helpers for tests: PostgreSQL discovery and a real `stillroom serve` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from proxy import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
STILLROOM = str(Path(sys.executable).with_name("stillroom"))


def pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    """``http://127.0.0.1:PORT`` (no ``/v1``)."""
    log_path: Path

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait: returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextmanager
def running_server(
    *,
    database_url: str,
    upstream_base_url: str,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    config: Path | None = None,
) -> Iterator[ServerProcess]:
    """`stillroom [--config FILE] serve` in a child process, as a user would run it; stopped
    with SIGTERM."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STILLROOM_", "OPENAI_"))
    }
    environment.update(
        {
            "STILLROOM_DATABASE_URL": database_url,
            "STILLROOM_UPSTREAM_BASE_URL": upstream_base_url,
            "STILLROOM_SPOOL_DIR": str(workdir / "spool"),
            "STILLROOM_LOG_LEVEL": "DEBUG",
            "STILLROOM_CAPTURE_FLUSH_SECONDS": "0.05",
            "STILLROOM_SPOOL_RETRY_SECONDS": "0.5",
        }
    )
    environment.update(env or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                STILLROOM,
                *(("--config", str(config)) if config is not None else ()),
                "serve",
                "--port",
                str(port),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=workdir,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_healthy(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(server: ServerProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"stillroom exited early:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"stillroom did not become healthy:\n{server.log()}")


def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Poll until ``predicate()`` is truthy; fail the test with a clear message otherwise."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


ADMIN_KEY = "admin-test-key"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def admin_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for an in-process app with the admin API on and nothing listening upstream."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_key": ADMIN_KEY,
        "spool_dir": tmp_path / "spool",
        "upstream_base_url": "http://127.0.0.1:9/v1",
    }
    return Settings(**(values | overrides))


def openai_error(response: Any, status: int) -> dict[str, Any]:
    """The error of an OpenAI-shaped error response with ``status``, checked for its keys."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error
