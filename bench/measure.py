"""The measurement rounds. Each round visits every target before the next round starts."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import aiohttp

from bench import procstat
from bench.load import (
    CLIENT_HEADERS,
    REQUEST_BODY,
    STREAM_BODY,
    LoadResult,
    percentile,
    run_async,
    run_closed_loop,
)
from bench.processes import metric_samples
from bench.targets import Target

_TIMEOUT = aiohttp.ClientTimeout(total=30)


@dataclass
class Tally:
    """Responses each target has received from the benchmark, warm-ups included."""

    responses: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Throughput:
    load: dict[str, Any]
    rps: float
    cpu_ms_per_request: float
    database_cpu_ms_per_request: float | None
    """CPU of the PostgreSQL server's processes per request, when its pid is known."""
    foreign_cpu_percent: float
    """CPU that processes outside the benchmark (and PostgreSQL) took meanwhile, % of one CPU."""
    load_cpu_percent: float = 0.0
    """CPU of the load generator, the mock and the benchmark itself meanwhile, % of one CPU:
    what a target that needs every CPU (several workers) has to share them with."""
    worker_shares: list[float] | None = None
    """With several workers, each one's share of the run's requests, largest first: the
    connections stay with the worker that accepted them, so an uneven split caps the run."""


@dataclass(frozen=True)
class Latencies:
    count: int
    failed: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float


@dataclass(frozen=True)
class Streaming:
    failed: int
    events_per_stream: int
    ttfb: Latencies
    total: Latencies


@dataclass(frozen=True)
class Soak:
    step: int
    rss_mib: list[tuple[int, float]]
    """(responses so far, RSS) before the first step and after each step."""
    rps: float
    failed: int
    cpu_ms_per_request: float


def _summarise(samples_s: Sequence[float], failed: int) -> Latencies:
    return Latencies(
        count=len(samples_s),
        failed=failed,
        p50_ms=percentile(samples_s, 0.50) * 1000,
        p90_ms=percentile(samples_s, 0.90) * 1000,
        p99_ms=percentile(samples_s, 0.99) * 1000,
        mean_ms=(sum(samples_s) / len(samples_s) * 1000) if samples_s else 0.0,
    )


def throughput_round(
    targets: Sequence[Target],
    *,
    wrk: str | None,
    connections: int,
    duration_s: int,
    warmup_s: int,
    workdir: Path,
    database_pid: int | None,
    tally: Tally,
) -> dict[str, Throughput]:
    results: dict[str, Throughput] = {}
    for target in targets:
        print(f"  throughput: {target.label} ({warmup_s} s warm-up + {duration_s} s)", flush=True)
        url = target.completions_url
        warm = run_closed_loop(
            wrk, url, connections=connections, duration_s=warmup_s, workdir=workdir
        )
        workers_before = worker_requests(target.metrics_url)
        cpu_before = procstat.cpu_seconds(target.pid).seconds
        db_before = procstat.cpu_seconds(database_pid).seconds if database_pid else 0.0
        ours_before = procstat.cpu_seconds(os.getpid()).seconds
        busy_before = procstat.machine_busy_seconds()
        load = run_closed_loop(
            wrk, url, connections=connections, duration_s=duration_s, workdir=workdir
        )
        busy = procstat.machine_busy_seconds() - busy_before
        workers_after = worker_requests(target.metrics_url)
        ours = procstat.cpu_seconds(os.getpid()).seconds - ours_before
        cpu_used = procstat.cpu_seconds(target.pid).seconds - cpu_before
        db_used = procstat.cpu_seconds(database_pid).seconds - db_before if database_pid else None
        foreign = max(0.0, busy - ours - (db_used or 0.0))
        tally.responses[target.key] += warm.requests + load.requests
        served = max(load.requests, 1)
        results[target.key] = Throughput(
            load=asdict(load),
            rps=load.rps,
            cpu_ms_per_request=cpu_used * 1000 / served,
            database_cpu_ms_per_request=None if db_used is None else db_used * 1000 / served,
            foreign_cpu_percent=foreign / max(load.duration_s, 1e-9) * 100,
            # The benchmark's tree holds wrk (reaped), the mock and every target: less this one.
            load_cpu_percent=max(0.0, ours - cpu_used) / max(load.duration_s, 1e-9) * 100,
            worker_shares=worker_shares(workers_before, workers_after),
        )
        _warn_failures(target, load)
    return results


def _warn_failures(target: Target, load: LoadResult) -> None:
    if load.failed:
        print(f"  !! {target.label}: {load.failed} of {load.requests} failed", flush=True)


async def _timed_post(session: aiohttp.ClientSession, url: str) -> float | None:
    sent = perf_counter()
    try:
        async with session.post(url, data=REQUEST_BODY, headers=CLIENT_HEADERS) as response:
            await response.read()
            if response.status != 200:
                return None
    except (aiohttp.ClientError, TimeoutError):
        return None
    return perf_counter() - sent


async def _fixed_rate(
    targets: Sequence[Target], rate: float, count: int, warmup: int, tally: Tally
) -> dict[str, Latencies]:
    sessions = {t.key: aiohttp.ClientSession(timeout=_TIMEOUT) for t in targets}
    try:
        for target in targets:
            for _ in range(warmup):
                if await _timed_post(sessions[target.key], target.completions_url) is not None:
                    tally.responses[target.key] += 1
        interval = 1.0 / rate
        slot = interval / len(targets)
        pending: list[tuple[str, asyncio.Task[float | None]]] = []
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1
        for index in range(count):
            for position, target in enumerate(targets):
                # Targets take turns inside each interval, so no two requests overlap.
                delay = start + index * interval + position * slot - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                request = _timed_post(sessions[target.key], target.completions_url)
                pending.append((target.key, asyncio.ensure_future(request)))
        outcomes = await asyncio.gather(*(task for _, task in pending))
    finally:
        for session in sessions.values():
            await session.close()
    results: dict[str, Latencies] = {}
    for target in targets:
        samples = [
            outcome
            for (key, _), outcome in zip(pending, outcomes, strict=True)
            if key == target.key and outcome is not None
        ]
        tally.responses[target.key] += len(samples)
        results[target.key] = _summarise(samples, failed=count - len(samples))
    return results


def fixed_rate_round(
    targets: Sequence[Target], *, rate: float, count: int, warmup: int, tally: Tally
) -> dict[str, Latencies]:
    """Open loop: every target gets `count` requests at `rate` per second, interleaved."""
    print(
        f"  fixed rate: {count} requests per target at {rate:g}/s, interleaved "
        f"(~{count / rate:.0f} s)",
        flush=True,
    )
    return run_async(_fixed_rate(targets, rate, count, warmup, tally))


async def _one_stream(session: aiohttp.ClientSession, url: str) -> tuple[float, float, int] | None:
    """(time to first body byte, time to end, SSE events) of one streamed request."""
    sent = perf_counter()
    try:
        async with session.post(url, data=STREAM_BODY, headers=CLIENT_HEADERS) as response:
            first = await response.content.readany()
            first_byte = perf_counter() - sent
            chunks = [first]
            async for chunk in response.content.iter_any():
                chunks.append(chunk)
            finished = perf_counter() - sent
            if response.status != 200 or not first:
                return None
    except (aiohttp.ClientError, TimeoutError):
        return None
    body = b"".join(chunks)
    if b"data: [DONE]" not in body:
        return None
    return first_byte, finished, body.count(b"data:")


async def _streams(
    targets: Sequence[Target], count: int, warmup: int, slot_s: float, tally: Tally
) -> dict[str, Streaming]:
    sessions = {t.key: aiohttp.ClientSession(timeout=_TIMEOUT) for t in targets}
    measured: dict[str, list[tuple[float, float, int]]] = {t.key: [] for t in targets}
    loop = asyncio.get_running_loop()
    next_start = loop.time()
    try:
        for index in range(warmup + count):
            for target in targets:
                # A fixed pace, whichever targets take part: an idle gap before each
                # request makes figures slower than back-to-back ones would be.
                delay = next_start - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_start = max(next_start + slot_s, loop.time())
                outcome = await _one_stream(sessions[target.key], target.completions_url)
                if outcome is None:
                    continue
                tally.responses[target.key] += 1
                if index >= warmup:
                    measured[target.key].append(outcome)
    finally:
        for session in sessions.values():
            await session.close()
    results: dict[str, Streaming] = {}
    for target in targets:
        samples = measured[target.key]
        failed = count - len(samples)
        events = sorted(s[2] for s in samples)
        results[target.key] = Streaming(
            failed=failed,
            events_per_stream=events[len(events) // 2] if events else 0,
            ttfb=_summarise([s[0] for s in samples], failed),
            total=_summarise([s[1] for s in samples], failed),
        )
    return results


def streaming_round(
    targets: Sequence[Target], *, count: int, warmup: int, slot_s: float, tally: Tally
) -> dict[str, Streaming]:
    """Sequential streamed requests, targets in turn, one starting every slot_s at most."""
    seconds = (count + warmup) * len(targets) * slot_s
    print(
        f"  streaming: {count} sequential streams per target, interleaved, one per "
        f"{slot_s * 1000:.0f} ms (~{seconds:.0f} s)",
        flush=True,
    )
    return run_async(_streams(targets, count, warmup, slot_s, tally))


def soak(
    target: Target,
    *,
    wrk: str | None,
    total: int,
    step: int,
    connections: int,
    workdir: Path,
    tally: Tally,
) -> Soak:
    """`total` requests in steps of `step`, with the target's RSS after each step."""
    print(f"  soak: {total} requests to {target.label}, RSS every {step}", flush=True)
    samples = [(0, procstat.rss_mib(target.pid))]
    served = 0
    failed = 0
    elapsed = 0.0
    cpu_before = procstat.cpu_seconds(target.pid).seconds
    for _ in range(total // step):
        load = run_closed_loop(
            wrk,
            target.completions_url,
            connections=connections,
            duration_s=300,
            limit=step,
            workdir=workdir,
        )
        served += load.requests
        failed += load.failed
        elapsed += load.duration_s
        samples.append((served, procstat.rss_mib(target.pid)))
        print(f"    {served:>7} requests  RSS {samples[-1][1]:7.1f} MiB", flush=True)
    cpu_used = procstat.cpu_seconds(target.pid).seconds - cpu_before
    tally.responses[target.key] += served
    return Soak(
        step=step,
        rss_mib=samples,
        rps=served / elapsed if elapsed else 0.0,
        failed=failed,
        cpu_ms_per_request=cpu_used * 1000 / max(served, 1),
    )


def worker_requests(metrics_url: str | None) -> dict[str, float]:
    """Requests each worker has answered (its pid label -> count, from
    ``stillroom_worker_requests``); empty when there is no ``/metrics`` to read."""
    samples = metric_samples(metrics_url, "stillroom_worker_requests") if metrics_url else None
    return dict(samples or [])


def worker_shares(before: dict[str, float], after: dict[str, float]) -> list[float] | None:
    """Each worker's share of the requests answered between two readings, largest first;
    None for one worker (or none seen)."""
    served = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    total = sum(served.values())
    if len(served) < 2 or total <= 0:
        return None
    return sorted((count / total for count in served.values()), reverse=True)


def _captures_counter(metrics_url: str) -> float | None:
    samples = metric_samples(metrics_url, "stillroom_captures_written_total")
    return sum(value for _, value in samples) if samples else None


def captures_written(target: Target, expected: int, settle_s: float = 20.0) -> float | None:
    """The capture counter once it reaches `expected` or stops moving for 3 s, or None."""
    if target.metrics_url is None:
        return None
    deadline = time.monotonic() + settle_s
    current = _captures_counter(target.metrics_url)
    unchanged = 0
    while current is not None and current < expected and time.monotonic() < deadline:
        time.sleep(1.0)
        latest = _captures_counter(target.metrics_url)
        unchanged = unchanged + 1 if latest == current else 0
        current = latest
        if unchanged >= 3:
            break
    return current
