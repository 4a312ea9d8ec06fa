"""What every request passes before its handler: input no handler should ever see, and a
client too slow to read its answer.

U+0000 cannot be stored (PostgreSQL refuses it) and has no business in a path or a query, so a
request that carries one, raw or as ``%00``, is answered 400 here, in OpenAI's error shape,
before any handler or query runs. A response write that waits on the client longer than
``write_timeout_seconds`` fails, which drops the connection: a client that reads very slowly
cannot hold a stream (and its upstream connection) open for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from proxy._errors import error_body

log = logging.getLogger("stillroom.edge")

_NUL = (b"%00", b"\x00")


def edge_middleware(write_timeout_seconds: float | None) -> Callable[[ASGIApp], ASGIApp]:
    def wrap(app: ASGIApp) -> ASGIApp:
        async def edge(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            if carries_nul(scope):
                await refuse_nul(send)
                return
            if write_timeout_seconds is None:
                await app(scope, receive, send)
                return
            guard = SlowReaderGuard(receive, send, write_timeout_seconds)
            await app(scope, guard.receive, guard.send)
            if guard.cut.is_set():
                log.warning(
                    "client read nothing for %.0f s; cut off (%s)",
                    write_timeout_seconds,
                    scope["path"],
                )

        return edge

    return wrap


def carries_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    raw_path: bytes = scope.get("raw_path") or b""
    return "\x00" in scope["path"] or any(
        marker in part for part in (query, raw_path) for marker in _NUL
    )


async def refuse_nul(send: Send) -> None:
    body = error_body(
        "The request's path or query contains a NUL character (%00), which is not allowed.",
        "invalid_request_error",
        param=None,
        code="invalid_character",
    )
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 400,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await send(start)
    done: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(done)


class SlowReaderGuard:
    """A send that gives up on a client that stopped reading, and tells the app as a client
    that left would: its receive then says ``http.disconnect``, so a stream under way is
    cancelled where it waits (and captured as abandoned), and what it still sends is dropped.
    The response is left unfinished, which makes the server drop the connection."""

    def __init__(self, receive: Receive, send: Send, seconds: float) -> None:
        self._receive = receive
        self._send = send
        self._seconds = seconds
        self._started = False
        self.cut = asyncio.Event()

    async def send(self, message: Message) -> None:
        if self.cut.is_set():
            return
        self._started = True
        # The server's send returns at once unless the client's buffer is full; only a
        # client that stopped reading makes it wait, and then only this long.
        try:
            async with asyncio.timeout(self._seconds):
                await self._send(message)
        except TimeoutError:
            self.cut.set()

    async def receive(self) -> ReceiveMessage:
        # Before the answer starts, the request body is read as it is; only a listener for
        # the client leaving reads after that, and it hears of a cut at once.
        if not self._started:
            return await self._receive()
        if self.cut.is_set():
            return {"type": "http.disconnect"}
        received = asyncio.ensure_future(self._receive())
        cut = asyncio.ensure_future(self.cut.wait())
        await asyncio.wait((received, cut), return_when=asyncio.FIRST_COMPLETED)
        if received.done():
            cut.cancel()
            return received.result()
        received.cancel()
        return {"type": "http.disconnect"}
