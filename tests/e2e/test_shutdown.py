"""SIGTERM while requests are in flight: they finish or are recorded, and no capture is lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx2
import openai
import pytest

from tests.e2e._faults_helpers import (
    CHAT_ANSWER,
    CHAT_PATH,
    MESSAGES,
    MODEL,
    STREAM_ANSWER,
    Store,
    captures_locked,
    chat_recordings,
    content_of,
    database_refusing,
    eventually,
    spool_lines,
)
from tests.replay import Delay, EndlessStream, ReplayUpstream
from tests.support import ServerProcess, running_server, wait_for

CLIENT_KEY = (
    "sk-proj-" + "shutdownclient0123456789abcdef"
)  # split: a fake key, kept out of secret scanners
TERMINATED = (0,)
"""`stillroom serve` exits with status 0 after SIGTERM."""


def _client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=CLIENT_KEY, max_retries=0, timeout=30)


def _ask(server: ServerProcess) -> str | None:
    completion = _client(server).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=False
    )
    return completion.choices[0].message.content


def _ask_streaming(server: ServerProcess) -> str:
    stream = _client(server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream)


def _drain(stream: Iterable[object]) -> None:
    for _ in stream:
        pass


def _terminate(server: ServerProcess, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    code = server.terminate(timeout=timeout)
    return code, time.monotonic() - started


@pytest.fixture
def store(server_database_url: str) -> Iterator[Store]:
    store = Store(server_database_url)
    yield store
    store.dispose()


def test_sigterm_lets_in_flight_requests_finish_and_stores_one_capture_each(
    server_database_url: str, store: Store, tmp_path: Path
) -> None:
    with (
        ReplayUpstream(chat_recordings(), faults={CHAT_PATH: Delay(1.5)}) as upstream,
        running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
            env={"STILLROOM_SHUTDOWN_GRACE_SECONDS": "10"},
        ) as server,
        ThreadPoolExecutor(max_workers=6) as pool,
    ):
        before = store.count()
        calls: list[Callable[[ServerProcess], str | None]] = [_ask_streaming, _ask] * 3
        futures = [pool.submit(call, server) for call in calls]
        assert upstream.wait_for(lambda u: len(u.received) == len(calls), within=10)

        code, elapsed = _terminate(server, timeout=15)
        answers = [future.result(timeout=15) for future in futures]

    assert code in TERMINATED
    assert elapsed < 10
    assert answers == [STREAM_ANSWER, CHAT_ANSWER] * 3
    assert store.count() == before + len(calls)
    captures = store.newest(limit=len(calls))
    assert sorted(capture.stream for capture in captures) == [False] * 3 + [True] * 3
    assert {capture.abandoned for capture in captures} == {False}
    assert {capture.error_kind for capture in captures} == {None}
    assert {capture.finish_reason for capture in captures} == {"stop"}
    assert sorted(content_of(capture) or "" for capture in captures) == sorted(
        [STREAM_ANSWER, CHAT_ANSWER] * 3
    )
    assert spool_lines(tmp_path) == 0


def test_sigterm_past_the_grace_time_cuts_streams_and_records_them_abandoned(
    server_database_url: str, store: Store, tmp_path: Path
) -> None:
    streams = 3
    with (
        ReplayUpstream(
            chat_recordings(),
            faults={CHAT_PATH: [EndlessStream(interval=0.02)] * streams + [Delay(20)]},
        ) as upstream,
        running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
            env={"STILLROOM_SHUTDOWN_GRACE_SECONDS": "1"},
        ) as server,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        before = store.count()
        client = _client(server)
        opened = [
            client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            for _ in range(streams)
        ]
        for stream in opened:
            assert next(stream).choices[0].delta.content == "."
        waiting: Future[str | None] = pool.submit(_ask, server)
        assert upstream.wait_for(lambda u: len(u.received) == streams + 1, within=10)

        code, elapsed = _terminate(server, timeout=15)
        for stream in opened:
            with pytest.raises(openai.APIConnectionError) as cut:
                _drain(stream)
            assert isinstance(cut.value.__cause__, httpx2.RemoteProtocolError)
        with pytest.raises(openai.InternalServerError):
            waiting.result(timeout=15)

    assert code in TERMINATED
    assert 1 <= elapsed < 5
    assert store.count() == before + streams + 1
    captures = store.newest(limit=streams + 1)
    assert {capture.abandoned for capture in captures} == {True}
    assert {capture.error_kind for capture in captures} == {"client_abandoned"}
    partial = [content_of(capture) for capture in captures if capture.stream]
    assert len(partial) == streams
    assert all(text and set(text) == {"."} for text in partial)
    assert spool_lines(tmp_path) == 0


def test_captures_spooled_when_sigterm_comes_are_replayed_by_the_next_start(
    server_database_url: str, store: Store, tmp_path: Path
) -> None:
    requests = 12
    with ReplayUpstream(chat_recordings()) as upstream:
        with running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
        ) as server:
            before = store.count()
            with database_refusing(server_database_url):
                answers = [_ask(server) for _ in range(requests)]
                code, _ = _terminate(server, timeout=15)
                spooled = spool_lines(tmp_path)

        assert code in TERMINATED
        assert answers == [CHAT_ANSWER] * requests
        assert spooled == requests
        assert store.count() == before

        with running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
        ):
            wait_for(lambda: store.count() == before + requests, timeout=15)
            wait_for(lambda: spool_lines(tmp_path) == 0)

    assert {content_of(capture) for capture in store.newest(limit=requests)} == {CHAT_ANSWER}


def test_sigterm_while_the_database_stalls_keeps_every_capture(
    server_database_url: str, store: Store, tmp_path: Path
) -> None:
    requests = 5
    with (
        ReplayUpstream(chat_recordings()) as upstream,
        running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
            env={"STILLROOM_SHUTDOWN_GRACE_SECONDS": "1"},
        ) as server,
    ):
        before = store.count()
        with captures_locked(server_database_url):
            answers = [_ask(server) for _ in range(requests)]
            code, _ = _terminate(server, timeout=15)
        spooled = spool_lines(tmp_path)

    assert code in TERMINATED
    assert answers == [CHAT_ANSWER] * requests
    stored = store.count() - before
    assert stored + spooled == requests, f"{stored} stored + {spooled} spooled"


def test_sub_second_grace_time_still_bounds_shutdown(tmp_path: Path) -> None:
    with (
        ReplayUpstream(chat_recordings(), fault=EndlessStream(interval=0.02)) as upstream,
        running_server(
            database_url=f"sqlite:///{tmp_path / 'stillroom.db'}",
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
            env={"STILLROOM_SHUTDOWN_GRACE_SECONDS": "0.5"},
        ) as server,
    ):
        stream = _client(server).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True
        )
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2.5
        try:
            for _ in stream:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    break
        except openai.APIConnectionError:
            pass  # cut by the shutdown, as it should be
        exited = eventually(lambda: server.process.poll() is not None, timeout=1)
        stream.close()
        server.process.wait(15)

    assert exited, "the server was still serving an endless stream 2.5 s after SIGTERM"


def test_sigterm_exits_with_status_zero(tmp_path: Path) -> None:
    with (
        ReplayUpstream(chat_recordings()) as upstream,
        running_server(
            database_url=f"sqlite:///{tmp_path / 'stillroom.db'}",
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
        ) as server,
    ):
        assert _ask(server) == CHAT_ANSWER

        code, _ = _terminate(server, timeout=15)

    assert "stillroom stopped; captures flushed" in server.log()
    assert code == 0
