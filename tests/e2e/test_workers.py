"""`stillroom serve --workers 2`, as a user runs it, on SQLite and on PostgreSQL.

Every request is captured exactly once whichever worker served it; `/metrics` counts for both
workers; while the database refuses, each worker spools to its own file and everything is
replayed once it answers; a worker killed with SIGKILL is replaced by uvicorn, its orphaned
spool replayed by another, and the `cycles` lease passes from it to a live worker.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest

from storage import get_lease, session_scope
from tests.e2e._faults_helpers import (
    MESSAGES,
    MODEL,
    Store,
    chat_recordings,
    database_refusing,
    metric,
    spool_lines,
)
from tests.replay import ReplayUpstream
from tests.support import ServerProcess, running_server, wait_for

CLIENT_KEY = "sk-e2e-workers-client"
SERVER_ENV = {
    "STILLROOM_CAPTURE_WRITE_TIMEOUT_SECONDS": "2",
    # Short, so a killed leader's lease runs out while the test waits.
    "STILLROOM_CYCLE_LEASE_SECONDS": "2",
    "STILLROOM_CYCLE_POLL_SECONDS": "0.5",
}
WORKERS = ("--workers", "2")


def first_traceback(log: str) -> str:
    """The log around its first traceback, for the failure message."""
    at = log.index("Traceback")
    return log[max(0, at - 2000) : at + 4000]


def _ask(base_url: str) -> None:
    """One chat completion on a connection of its own, so that either worker may take it."""
    with openai.OpenAI(base_url=base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30) as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
    assert answer.choices[0].message.content


def send(server: ServerProcess, count: int) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        for done in [pool.submit(_ask, server.v1) for _ in range(count)]:
            done.result()


def metrics_text(server: ServerProcess) -> str:
    return httpx.get(server.base_url + "/metrics", timeout=5).text


def worker_requests(server: ServerProcess) -> dict[int, float]:
    """Requests each live worker answered, by pid, as /metrics shows them."""
    found = re.findall(
        r'^stillroom_worker_requests\{pid="(\d+)"\} (\S+)$', metrics_text(server), re.MULTILINE
    )
    return {int(pid): float(value) for pid, value in found}


def chat_requests(server: ServerProcess) -> float:
    match = re.search(
        r'^stillroom_requests_total\{route="chat",status="2xx"\} (\S+)$',
        metrics_text(server),
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


def two_workers(server: ServerProcess) -> list[int]:
    wait_for(lambda: len(worker_requests(server)) == 2, timeout=90, interval=0.2)
    return sorted(worker_requests(server))


def spool_of(workdir: Path, pid: int) -> Path:
    return workdir / "spool" / f"spool-{socket.gethostname()}-{pid}.jsonl"


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def cycles_leader(store: Store) -> int | None:
    """The pid in the owner of the live `cycles` lease (owners are host:pid:random)."""
    with session_scope(store.engine) as session:
        lease = get_lease("cycles", session=session)
    if lease is None or lease.until <= datetime.now(UTC):
        return None
    return int(lease.owner.split(":")[1])


@pytest.fixture
def upstream() -> Iterator[ReplayUpstream]:
    with ReplayUpstream(chat_recordings()) as server:
        yield server


def test_requests_through_two_workers_are_stored_once_each_and_counted_over_both(
    database_url: str, upstream: ReplayUpstream, tmp_path: Path
) -> None:
    total = 200
    store = Store(database_url)
    with running_server(
        database_url=database_url,
        upstream_base_url=upstream.base_url,
        workdir=tmp_path,
        env=SERVER_ENV,
        args=WORKERS,
    ) as server:
        try:
            pids = two_workers(server)
            assert server.process.pid not in pids
            send(server, total)
            wait_for(lambda: metric(server, "stillroom_captures_written_total") == total, 60)
            stored = store.count()
            # Each worker samples its own count into /metrics once a second.
            wait_for(lambda: sum(worker_requests(server).values()) == total, timeout=10)
            per_worker = worker_requests(server)
            leader = cycles_leader(store)
            requests = chat_requests(server)
            submitted = metric(server, "stillroom_captures_submitted_total")
            log = server.log()
        finally:
            store.dispose()
    print(f"\ntwo workers: {total} answered, {stored} stored, by worker {per_worker}")
    assert stored == total
    assert requests == total
    assert submitted == total
    assert sorted(per_worker) == pids
    assert all(count > 0 for count in per_worker.values())
    assert leader in pids
    assert "Traceback" not in log, first_traceback(log)


def test_while_the_database_refuses_each_worker_spools_to_its_own_file_and_all_is_replayed(
    database_url: str, upstream: ReplayUpstream, tmp_path: Path
) -> None:
    total = 120
    store = Store(database_url)
    with running_server(
        database_url=database_url,
        upstream_base_url=upstream.base_url,
        workdir=tmp_path,
        env=SERVER_ENV,
        args=WORKERS,
    ) as server:
        try:
            pids = two_workers(server)
            with database_refusing(database_url):
                send(server, total)
                wait_for(lambda: spool_lines(tmp_path) == total, timeout=60)
                spooled_by = {pid: lines(spool_of(tmp_path, pid)) for pid in pids}
            wait_for(lambda: store.count() == total, timeout=60)
            wait_for(lambda: spool_lines(tmp_path) == 0, timeout=30)
            wait_for(lambda: metric(server, "stillroom_captures_replayed_total") == total, 30)
            stored = store.count()
            spooled = metric(server, "stillroom_captures_spooled_total")
            written = metric(server, "stillroom_captures_written_total")
            log = server.log()
        finally:
            store.dispose()
    print(f"\ntwo workers, database refusing: spooled by worker {spooled_by}, {stored} stored")
    assert sum(spooled_by.values()) == total
    assert all(count > 0 for count in spooled_by.values())
    assert stored == total
    assert spooled == total
    assert written == total
    assert "Traceback" not in log, first_traceback(log)


def test_a_killed_worker_is_replaced_its_spool_replayed_and_its_lease_taken_over(
    database_url: str, upstream: ReplayUpstream, tmp_path: Path
) -> None:
    store = Store(database_url)
    with running_server(
        database_url=database_url,
        upstream_base_url=upstream.base_url,
        workdir=tmp_path,
        env=SERVER_ENV,
        args=WORKERS,
    ) as server:
        try:
            pids = two_workers(server)
            wait_for(lambda: cycles_leader(store) in pids, timeout=30)
            victim = cycles_leader(store)
            assert victim is not None
            sent = 0
            with database_refusing(database_url):
                # The victim must hold captures in its spool when it dies.
                while lines(spool_of(tmp_path, victim)) == 0:
                    assert sent < 400, "the leader never took a request"
                    send(server, 20)
                    sent += 20
                    # The count follows the spool's fsync: the kill must not land between.
                    wait_for(
                        lambda expected=sent: (
                            spool_lines(tmp_path) == expected
                            and metric(server, "stillroom_captures_spooled_total") == expected
                        ),
                        timeout=60,
                    )
                orphaned = lines(spool_of(tmp_path, victim))
                os.kill(victim, signal.SIGKILL)
                survivors = two_workers_without(server, victim)
            wait_for(lambda: store.count() == sent, timeout=60)
            wait_for(lambda: cycles_leader(store) in survivors, timeout=30)
            wait_for(lambda: metric(server, "stillroom_captures_replayed_total") == sent, 30)
            stored = store.count()
            leader = cycles_leader(store)
            spooled = metric(server, "stillroom_captures_spooled_total")
            log = server.log()
        finally:
            store.dispose()
    print(
        f"\nkilled worker {victim} with {orphaned} spooled captures; {sent} answered, "
        f"{stored} stored; workers now {survivors}, leader {leader}"
    )
    assert not spool_of(tmp_path, victim).exists()
    assert stored == sent
    assert spooled == sent
    assert leader in survivors
    assert victim not in survivors
    assert f"Child process [{victim}] died" in log
    assert "Traceback" not in log, first_traceback(log)


def two_workers_without(server: ServerProcess, gone: int) -> list[int]:
    """The live workers once uvicorn has replaced ``gone``."""
    wait_for(
        lambda: gone not in worker_requests(server) and len(worker_requests(server)) == 2,
        timeout=90,
        interval=0.2,
    )
    return sorted(worker_requests(server))
