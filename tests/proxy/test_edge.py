"""The edge every request passes, and what /readyz says of the writer and the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from litestar.testing import TestClient
from litestar.types import Message, Receive, ReceiveMessage, Scope, Send

from proxy import create_app
from proxy._edge import edge_middleware
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
