"""Closed-loop load at N connections: wrk when it is there, an aiohttp generator otherwise."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, TypeVar

import aiohttp

from bench.processes import run_logged

_T = TypeVar("_T")

REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello"}],
}
REQUEST_BODY = json.dumps(REQUEST).encode()
STREAM_BODY = json.dumps({**REQUEST, "stream": True}).encode()
CLIENT_HEADERS = {
    "Authorization": "Bearer sk-bench-client",
    "Content-Type": "application/json",
}
_WRK_MARK = "BENCH_JSON "
_LIMIT_MARK = "BENCH_LIMIT_REACHED"


@dataclass(frozen=True)
class LoadResult:
    """What one closed-loop run measured."""

    tool: str
    requests: int
    """Responses received, whatever their status."""
    duration_s: float
    failed: int
    """Responses that were not 2xx, plus socket errors and timeouts."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def run_async(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion on uvloop when importable, with the GC paused.

    A collection in the client in the middle of a timed request would show up as the
    target's latency; the rounds are short enough to keep everything until the end.
    """
    gc.collect()
    gc.disable()
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coroutine)
        result: _T = uvloop.run(coroutine)
        return result
    finally:
        gc.enable()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of values (fraction in 0..1); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ensure_wrk(allow_install: bool, log: Path) -> str | None:
    """Path of wrk, installing Debian's package when allowed and possible."""
    found = shutil.which("wrk")
    if found or not allow_install:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None
    print(f"  wrk missing: apt-get install -y wrk (log: {log}) ...", flush=True)
    env_args = ["env", "DEBIAN_FRONTEND=noninteractive"]
    if not run_logged([*env_args, apt, "install", "-y", "wrk"], log, timeout=300):
        run_logged([*env_args, apt, "update"], log, timeout=300)
        run_logged([*env_args, apt, "install", "-y", "wrk"], log, timeout=300)
    return shutil.which("wrk")


def wrk_version(wrk: str) -> str:
    probe = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    first = (probe.stdout or probe.stderr).splitlines()
    return first[0].split(" [")[0].removeprefix("wrk ") if first else "?"


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def wrk_script(limit: int) -> str:
    """Lua for wrk: the POST, an optional stop after `limit` responses, a JSON summary."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {_lua_string(REQUEST_BODY.decode())}",
    ]
    lines += [
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in CLIENT_HEADERS.items()
    ]
    if limit > 0:
        lines += [
            "local seen = 0",
            "response = function(status, headers, body)",
            "  seen = seen + 1",
            f"  if seen == {limit} then",
            f"    io.write('{_LIMIT_MARK}\\n')",
            "    io.flush()",
            "    wrk.thread:stop()",
            "  end",
            "end",
        ]
    lines += [
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        "  io.write(string.format('" + _WRK_MARK + '{"requests":%d,"duration_us":%d,\'',
        '    .. \'"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,\'',
        '    .. \'"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"mean_us":%.1f}\\n\',',
        "    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,",
        "    e.timeout, latency:percentile(50), latency:percentile(90),",
        "    latency:percentile(99), latency.mean))",
        "end",
    ]
    return "\n".join(lines) + "\n"


def run_wrk(
    wrk: str, url: str, *, connections: int, duration_s: int, limit: int, workdir: Path
) -> LoadResult:
    """One wrk run of duration_s seconds (or until `limit` responses, when limit > 0)."""
    script = workdir / f"wrk-limit-{limit}.lua"
    script.write_text(wrk_script(limit))
    argv = [wrk, "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "10s"]
    # A wrk thread that stops itself still leaves wrk sleeping out -d, so the script prints a
    # mark at the limit and SIGINT makes wrk print its summary at once.
    process = subprocess.Popen(
        [*argv, "-s", str(script), url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(duration_s + 60, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        output: list[str] = []
        for line in process.stdout:
            output.append(line)
            if line.startswith(_LIMIT_MARK):
                process.send_signal(signal.SIGINT)
        stderr = process.stderr.read() if process.stderr else ""
        process.wait()
    finally:
        watchdog.cancel()
    stdout = "".join(output)
    marked = [line for line in stdout.splitlines() if line.startswith(_WRK_MARK)]
    if not marked:
        raise RuntimeError(f"wrk printed no summary: {stdout[-500:]}{stderr[-500:]}")
    data = json.loads(marked[-1][len(_WRK_MARK) :])
    socket_errors = sum(int(data[k]) for k in ("connect", "read", "write", "timeout"))
    return LoadResult(
        tool="wrk",
        requests=int(data["requests"]),
        duration_s=float(data["duration_us"]) / 1e6,
        failed=int(data["status"]) + socket_errors,
        p50_ms=float(data["p50_us"]) / 1000,
        p90_ms=float(data["p90_us"]) / 1000,
        p99_ms=float(data["p99_us"]) / 1000,
        mean_ms=float(data["mean_us"]) / 1000,
    )


async def _closed_loop(url: str, connections: int, duration_s: float, limit: int) -> LoadResult:
    latencies: list[float] = []
    failed = 0
    issued = 0
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = perf_counter()
        deadline = began + duration_s

        async def worker() -> None:
            nonlocal failed, issued
            while perf_counter() < deadline and (limit <= 0 or issued < limit):
                issued += 1
                sent = perf_counter()
                try:
                    async with session.post(
                        url, data=REQUEST_BODY, headers=CLIENT_HEADERS
                    ) as response:
                        await response.read()
                        if response.status >= 300:
                            failed += 1
                except (aiohttp.ClientError, TimeoutError):
                    failed += 1
                    continue
                latencies.append(perf_counter() - sent)

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = perf_counter() - began
    return LoadResult(
        tool="aiohttp",
        requests=len(latencies),
        duration_s=elapsed,
        failed=failed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p90_ms=percentile(latencies, 0.90) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        mean_ms=(sum(latencies) / len(latencies) * 1000) if latencies else 0.0,
    )


def run_closed_loop(
    wrk: str | None,
    url: str,
    *,
    connections: int,
    duration_s: int,
    limit: int = 0,
    workdir: Path,
) -> LoadResult:
    """Closed-loop load with wrk, or the aiohttp generator when wrk is None."""
    if wrk is not None:
        return run_wrk(
            wrk, url, connections=connections, duration_s=duration_s, limit=limit, workdir=workdir
        )
    return run_async(_closed_loop(url, connections, float(duration_s), limit))
