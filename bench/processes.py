"""Child processes of the benchmark: spawn, wait until they answer, stop them all at the end."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# No proxy from the environment may sit between the benchmark and loopback servers.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StartError(RuntimeError):
    """A child process did not come up; the message says why, with its log's last lines."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET; status 0 when nothing answered."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def metric_samples(metrics_url: str, name: str) -> list[tuple[str, float]] | None:
    """The samples of metric ``name`` on a Prometheus text page, as (their labels as written,
    value); None when the page cannot be read."""
    status, body = http_get(metrics_url)
    if status != 200:
        return None
    samples = []
    for line in body.decode(errors="replace").splitlines():
        head, _, value = line.rpartition(" ")
        if head.split("{", 1)[0] == name:
            samples.append((head[len(name) :], float(value)))
    return samples


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """One process the benchmark started, in its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Fleet:
    """Owns every child it spawned and stops them, newest first, on close()."""

    logdir: Path
    children: list[Child] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cpus: set[int] | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
    ) -> Child:
        log = self.logdir / f"{name}.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log_file,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=_pin_to(cpus) if cpus else None,
            )
        child = Child(name=name, process=process, log=log)
        self.children.append(child)
        return child

    def stop(self, child: Child, grace: float = 10.0) -> None:
        if child.alive():
            _signal_group(child.pid, signal.SIGTERM)
            try:
                child.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(child.pid, signal.SIGKILL)
                child.process.wait(timeout=grace)
        else:
            # The leader is gone; its group may still hold workers it left behind.
            _signal_group(child.pid, signal.SIGKILL)
        if child.process.stdout is not None:
            child.process.stdout.close()

    def close(self) -> None:
        while self.children:
            self.stop(self.children.pop())


def _pin_to(cpus: set[int]) -> Callable[[], None]:
    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # Each child leads its own session (start_new_session), so its group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def read_ready_line(child: Child, prefix: str, timeout: float) -> str:
    """The first stdout line starting with prefix, read within timeout seconds."""
    stream = child.process.stdout
    if stream is None:
        raise StartError(f"{child.name}: stdout is not piped")
    deadline = time.monotonic() + timeout
    buffer = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
        elif not child.alive():
            break
    raise StartError(f"{child.name} did not print {prefix!r}:\n{log_tail(child.log)}")


def wait_until_healthy(child: Child, url: str, timeout: float) -> float:
    """Poll url until it answers 200; seconds it took. Raises StartError on exit or timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not child.alive():
            raise StartError(
                f"{child.name} exited with code {child.process.returncode} before {url} "
                f"answered:\n{log_tail(child.log)}"
            )
        status, _ = http_get(url, timeout=2.0)
        if status == 200:
            return time.monotonic() - started
        time.sleep(0.2)
    raise StartError(f"{child.name}: {url} not 200 after {timeout:.0f} s:\n{log_tail(child.log)}")


def run_logged(argv: Sequence[str], log: Path, timeout: float) -> bool:
    """Run a command to completion, appending its output to log; True when it exits 0."""
    with log.open("ab") as log_file:
        log_file.write(f"$ {' '.join(argv)}\n".encode())
        log_file.flush()
        try:
            completed = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except (subprocess.TimeoutExpired, OSError) as error:
            log_file.write(f"failed: {error}\n".encode())
            return False
    return completed.returncode == 0
