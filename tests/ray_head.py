"""A throwaway local Ray head for tests: ``ray start --head --block`` on free ports, in a temp
dir of its own, stopped by its own processes only.

``ray stop`` would stop every Ray process of the machine, whoever started it. Instead each
process of this head carries a marker in its environment (Ray's processes and the jobs' ones
inherit it), and the stop signals the processes that carry this head's marker, by pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_MARKER = "STILLROOM_TEST_RAY_HEAD"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class RayHead:
    address: str
    """The dashboard (Jobs API), ``http://127.0.0.1:<port>``."""
    temp_dir: Path
    log: Path
    marker: str
    process: subprocess.Popen[bytes]
    started_in: float
    """Seconds from ``ray start`` to a dashboard that answers."""

    def pids(self) -> list[int]:
        """This head's processes and its jobs': those whose environment has its marker."""
        needle = f"{_MARKER}={self.marker}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found.append(int(entry.name))
        return found

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM to ``ray start --block`` (it drains and stops what it started), then SIGKILL
        to whatever of this head is left; returns the seconds it took."""
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        deadline = began + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return time.monotonic() - began


_TRIES = 3


def start_head(*, num_cpus: int = 4, timeout: float = 90.0) -> RayHead:
    """A head whose jobs run with this interpreter as ``python`` (first on their PATH).

    The free ports are found by binding and letting go, so another process of the machine (the
    other test worker's servers) can take one before Ray binds it, and ``ray start`` exits at
    once: such a start is tried again on new ports, a few times, before the error is raised.
    """
    for _ in range(_TRIES - 1):
        with contextlib.suppress(_ExitedEarly):
            return _start_head(num_cpus=num_cpus, timeout=timeout)
    return _start_head(num_cpus=num_cpus, timeout=timeout)


class _ExitedEarly(RuntimeError):
    pass


def _start_head(*, num_cpus: int, timeout: float) -> RayHead:
    # Short: Ray's unix socket paths live under it and must stay under 108 characters.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    marker = uuid.uuid4().hex
    dashboard = free_port()
    env = dict(os.environ)
    env[_MARKER] = marker
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    log = temp_dir / "head.log"
    ports = {
        "--port": free_port(),
        "--dashboard-port": dashboard,
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
    }
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--object-store-memory=100000000",
        "--include-dashboard=true",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    began = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    head = RayHead(f"http://127.0.0.1:{dashboard}", temp_dir, log, marker, process, 0.0)
    while time.monotonic() - began < timeout:
        if process.poll() is not None:
            said = _tail(log)  # read before stop() removes the temp dir that holds it
            head.stop()
            raise _ExitedEarly(f"ray start exited {process.returncode}: {said}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{head.address}/api/version", timeout=1).read()
            return RayHead(head.address, temp_dir, log, marker, process, time.monotonic() - began)
        time.sleep(0.2)
    said = _tail(log)
    head.stop()
    raise RuntimeError(f"the Ray head did not answer in {timeout} s: {said}")


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    return ""


@contextlib.contextmanager
def ray_head(**options: int) -> Iterator[RayHead]:
    head = start_head(**options)
    try:
        yield head
    finally:
        head.stop()
