"""The edge every request passes, and what /readyz says of the writer and the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from litestar.testing import TestClient
from litestar.types import Message, Receive, ReceiveMessage, Scope, Send

from proxy import create_app
from proxy._edge import SendWatch, edge_middleware
from tests.support import admin_settings


async def test_a_client_that_stops_reading_is_cut_off_after_the_write_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[Message] = []

    heard: list[ReceiveMessage] = []

    async def app(_scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        heard.append(await receive())
        await send({"type": "http.response.body", "body": b"y", "more_body": False})

    async def stuck_send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # the client's buffer is full, for good

    async def receive() -> ReceiveMessage:
        await asyncio.Event().wait()  # the client is still connected, just not reading
        raise AssertionError("unreachable")

    scope = {"type": "http", "path": "/v1/chat/completions", "query_string": b"", "headers": []}
    guarded = edge_middleware(0.05)(app)
    await guarded(scope, receive, stuck_send)  # type: ignore[arg-type]
    # The rest was dropped and the response left unfinished: the server drops the connection.
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert heard == [{"type": "http.disconnect"}]
    assert "client read nothing for 0 s; cut off (/v1/chat/completions)" in caplog.text


async def test_a_send_that_waits_less_than_the_write_timeout_is_not_cut() -> None:
    sent: list[bytes] = []

    async def app(_scope: Scope, _receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def slow_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            await asyncio.sleep(0.03)  # a client that reads, slowly
            sent.append(message["body"])

    async def receive() -> ReceiveMessage:
        raise AssertionError("nothing reads after the request")

    scope = {"type": "http", "path": "/v1/chat/completions", "query_string": b"", "headers": []}
    # Four sends of 0.03 s: 0.12 s in all, each well within 0.08 s.
    await edge_middleware(0.08)(app)(scope, receive, slow_send)  # type: ignore[arg-type]
    assert sent == [b"a", b"b", b"c", b""]


async def test_a_cancel_that_is_not_the_write_timeout_goes_through_the_guard() -> None:
    watch = SendWatch(30.0)
    waiting = asyncio.Event()

    async def stuck_send(_message: Message) -> None:
        waiting.set()
        await asyncio.Event().wait()

    async def receive() -> ReceiveMessage:
        raise AssertionError("unreachable")

    guard = watch.guard(receive, stuck_send)
    sending = asyncio.ensure_future(
        guard.send({"type": "http.response.start", "status": 200, "headers": []})
    )
    await waiting.wait()
    sending.cancel()  # as a stream's pump is when its client leaves
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert not guard.cut_off
    watch.release(guard)


async def test_the_write_timeout_keeps_no_task_once_the_last_request_is_done() -> None:
    watch = SendWatch(0.04)

    async def send(_message: Message) -> None:
        return None

    async def receive() -> ReceiveMessage:
        raise AssertionError("unreachable")

    guards = [watch.guard(receive, send) for _ in range(3)]
    assert len(asyncio.all_tasks()) == 2  # this test's and the watch's one timer
    for guard in guards:
        await guard.send({"type": "http.response.start", "status": 200, "headers": []})
        watch.release(guard)
    await asyncio.sleep(0.05)  # one round of the timer: it finds no request and ends
    assert asyncio.all_tasks() == {asyncio.current_task()}


def test_readyz_is_unavailable_when_the_capture_writer_is_not_running(
    database_url: str, tmp_path: Path
) -> None:
    app = create_app(admin_settings(database_url, tmp_path))
    with TestClient(app=app) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        app.state.services.sink.close(5)
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "reason": "the capture writer is not running",
        "capture_queue": 0,
    }


def test_readyz_is_degraded_with_the_reason_when_the_database_is_unreachable(
    tmp_path: Path,
) -> None:
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:9/none"
    with TestClient(app=create_app(admin_settings(nowhere, tmp_path))) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["reason"].startswith("database unavailable: ")
    assert body["capture_queue"] == 0
