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
import time
from collections.abc import Callable
from typing import Any

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


def edge_middleware(write_timeout_seconds: float | None) -> Callable[[ASGIApp], ASGIApp]:
    def wrap(app: ASGIApp) -> ASGIApp:
        watch = SendWatch(write_timeout_seconds) if write_timeout_seconds is not None else None

        async def edge(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            if carries_nul(scope):
                await refuse_nul(send)
                return
            if watch is None:
                await app(scope, receive, send)
            else:
                await watch.run(app, scope, receive, send)

        return edge

    return wrap


def carries_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    raw_path: bytes = scope.get("raw_path") or b""
    # Spelt out rather than looped: this runs on every request.
    return (
        "\x00" in scope["path"]
        or b"%00" in query
        or b"\x00" in query
        or b"%00" in raw_path
        or b"\x00" in raw_path
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


class SendWatch:
    """Gives up on sends that waited ``seconds`` for a client, for every request of a process,
    with one timer: a task that looks at the sends under way a few times a timeout.

    A timer a send (``asyncio.timeout``) was 7 % of the event loop's time on the hot path: a
    handle made, pushed on the loop's heap and cancelled twice a request, for a wait that
    almost never happens. Here a send only notes when it started; a cut comes between
    ``seconds`` and ``seconds`` and a quarter (at most a second) after the send began."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._every = min(1.0, seconds / 4)
        self._guards: set[SlowReaderGuard] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """``app`` answering one request through a guard; a cut is logged."""
        guard = self.guard(receive, send)
        try:
            await app(scope, guard.receive, guard.send)
        finally:
            self.release(guard)
        if guard.cut_off:
            log.warning("client read nothing for %.0f s; cut off (%s)", self.seconds, scope["path"])

    def guard(self, receive: Receive, send: Send) -> SlowReaderGuard:
        """A guard for one request; ``release`` it when the request ends."""
        guard = SlowReaderGuard(receive, send)
        self._guards.add(guard)
        sweeper = self._sweeper
        loop = asyncio.get_running_loop()
        if sweeper is None or sweeper.done() or sweeper.get_loop() is not loop:
            # Ends when no request is left, so a loop that closes finds no task of ours.
            self._sweeper = loop.create_task(self._sweep())
        return guard

    def release(self, guard: SlowReaderGuard) -> None:
        self._guards.discard(guard)

    async def _sweep(self) -> None:
        while self._guards:
            await asyncio.sleep(self._every)
            now = time.monotonic()
            for guard in list(self._guards):
                since = guard.sending_since
                if since is not None and now - since >= self.seconds:
                    guard.expire()


class SlowReaderGuard:
    """A send that gives up on a client that stopped reading (its ``SendWatch`` says when),
    and tells the app as a client that left would: its receive then says
    ``http.disconnect``, so a stream under way is cancelled where it waits (and captured as
    abandoned), and what it still sends is dropped. The response is left unfinished, which
    makes the server drop the connection."""

    __slots__ = (
        "_cancelling",
        "_cut_heard",
        "_expired",
        "_receive",
        "_send",
        "_started",
        "_task",
        "cut_off",
        "sending_since",
    )

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._started = False
        self._expired = False
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self.sending_since: float | None = None
        self.cut_off = False
        # Made only for a listener that waits for the client after the answer began.
        self._cut_heard: asyncio.Event | None = None

    async def send(self, message: Message) -> None:
        if self.cut_off:
            return
        self._started = True
        # The server's send returns at once unless the client's buffer is full; only a
        # client that stopped reading makes it wait, and then only until the watch expires it.
        self._task = asyncio.current_task()
        self.sending_since = time.monotonic()
        try:
            await self._send(message)
        except asyncio.CancelledError:
            task = self._task
            # Cancelled by ``expire`` alone: the cut. Anyone else's cancel goes on up.
            if not self._expired or task is None or task.uncancel() > self._cancelling:
                raise
            self.cut_off = True
            if self._cut_heard is not None:
                self._cut_heard.set()
        finally:
            self.sending_since = None

    def expire(self) -> None:
        """Called by the watch while this guard's send waits: the waiting send is cancelled
        (the task is suspended in it, so the cancel lands there) and becomes the cut."""
        task = self._task
        if self._expired or task is None:
            return
        self._expired = True
        self._cancelling = task.cancelling()
        task.cancel()

    async def receive(self) -> ReceiveMessage:
        # Before the answer starts, the request body is read as it is; only a listener for
        # the client leaving reads after that, and it hears of a cut at once.
        if not self._started:
            return await self._receive()
        if self.cut_off:
            return {"type": "http.disconnect"}
        if self._cut_heard is None:
            self._cut_heard = asyncio.Event()
        received = asyncio.ensure_future(self._receive())
        cut = asyncio.ensure_future(self._cut_heard.wait())
        await asyncio.wait((received, cut), return_when=asyncio.FIRST_COMPLETED)
        if received.done():
            cut.cancel()
            return received.result()
        received.cancel()
        return {"type": "http.disconnect"}
