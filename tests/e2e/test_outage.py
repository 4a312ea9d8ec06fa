"""PostgreSQL stopped and started under load, on a server of the test's own (the shared
one on 5432 is never touched), with steady `openai` SDK traffic through `stillroom serve`.

Stopped under load with stillroom keys: no request fails, every capture is stored once.
Down when the proxy starts: it starts, forwards and spools, then migrates the database and
replays everything once it is up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e._faults_helpers import (
    MESSAGES,
    MODEL,
    Store,
    chat_recordings,
    create_stillroom_key,
    metric,
    spool_lines,
)
from tests.e2e._own_postgres import OwnPostgres, own_postgres
from tests.replay import ReplayUpstream
from tests.support import running_server, wait_for

CLIENT_KEY = "sk-proj-" + "outageclient0123456789abcdef"  # split: a fake key
SERVER_UPSTREAM_KEY = "sk-svcacct-" + "outageserverupstream0123456789"  # split: a fake key
SERVER_ENV = {
    "STILLROOM_UPSTREAM_API_KEY": SERVER_UPSTREAM_KEY,
    # Shorter than the outage, so keys are verified again while the database is down.
    "STILLROOM_KEY_CACHE_SECONDS": "1",
    "STILLROOM_CAPTURE_WRITE_TIMEOUT_SECONDS": "2",
}


class Load:
    """Clients on threads, each sending chat completions until stopped; counts the answers."""

    def __init__(self, base_url: str, api_key: str, clients: int = 4) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []
        self._threads = [
            threading.Thread(target=self._run, args=(base_url, api_key), daemon=True)
            for _ in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, base_url: str, api_key: str) -> None:
        client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)
        while not self._stop.is_set():
            try:
                answer = client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=False
                )
                assert answer.choices[0].message.content
            except Exception as exc:
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                with self._lock:
                    self.answered += 1

    def wait_for_more(self, count: int, timeout: float = 120) -> None:
        target = self.answered + count
        wait_for(lambda: self.answered >= target or bool(self.failures), timeout=timeout)
        assert self.failures == []


@pytest.fixture
def postgres() -> Iterator[OwnPostgres]:
    with own_postgres() as server:
        yield server


def test_postgres_stopped_and_started_under_load_with_stillroom_keys_loses_nothing(
    postgres: OwnPostgres, tmp_path: Path
) -> None:
    with (
        ReplayUpstream(chat_recordings()) as upstream,
        running_server(
            database_url=postgres.url,
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
            env=SERVER_ENV,
        ) as server,
    ):
        _, secret = create_stillroom_key(postgres.url, "drill", tmp_path)
        store = Store(postgres.url)
        try:
            with Load(server.v1, secret) as load:
                load.wait_for_more(100)
                postgres.stop()
                stopped_at = load.answered
                time.sleep(2)  # past the key cache: keys are checked while the database is down
                load.wait_for_more(200)
                answered_while_down = load.answered - stopped_at
                postgres.start()
                load.wait_for_more(100)
            answered = load.answered
            wait_for(lambda: store.count() == answered, timeout=60)
            stored = store.count()
            spooled = metric(server, "stillroom_captures_spooled_total")
            # A spool file is counted as replayed once all its rows are stored, just after.
            wait_for(
                lambda: metric(server, "stillroom_captures_replayed_total") == spooled, timeout=30
            )
            replayed = metric(server, "stillroom_captures_replayed_total")
        finally:
            store.dispose()
    print(
        f"\noutage drill (sr- keys): {answered} answered, {len(load.failures)} failed, "
        f"{answered_while_down} while down, {stored} stored, {spooled:.0f} spooled, "
        f"{replayed:.0f} replayed"
    )
    assert load.failures == []
    assert answered_while_down >= 200
    assert stored == answered  # none lost, none stored twice
    assert spooled >= 1
    assert replayed == spooled


def test_started_while_postgres_is_down_it_forwards_then_migrates_and_replays(
    tmp_path: Path,
) -> None:
    with (
        own_postgres(started=False) as postgres,
        ReplayUpstream(chat_recordings()) as upstream,
        running_server(
            database_url=postgres.url,
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
            env=SERVER_ENV,
        ) as server,
    ):
        ready = httpx.get(server.base_url + "/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["reason"].startswith("database unavailable")
        client = openai.OpenAI(base_url=server.v1, api_key=CLIENT_KEY, max_retries=0)
        for _ in range(60):
            assert client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=False
            ).choices
        wait_for(lambda: spool_lines(tmp_path) == 60, timeout=30)

        postgres.start()
        store = Store(postgres.url)
        try:
            wait_for(lambda: _count_or_zero(store) == 60, timeout=60)
            stored = store.count()
        finally:
            store.dispose()
        after = httpx.get(server.base_url + "/readyz", timeout=10).json()
        # Counted once the whole spool file is stored, just after its rows.
        wait_for(lambda: metric(server, "stillroom_captures_replayed_total") == 60, timeout=30)
        replayed = metric(server, "stillroom_captures_replayed_total")
    print(f"\nstart-while-down drill: 60 answered, {stored} stored, {replayed:.0f} replayed")
    assert stored == 60
    assert replayed == 60
    assert after["status"] == "ready"
    assert "database unavailable" in server.log()
    assert server.log().count("Traceback") == 0


def _count_or_zero(store: Store) -> int:
    """The store's count, or 0 while its schema is still being made."""
    try:
        return store.count()
    except Exception:
        store.dispose()
        return 0
