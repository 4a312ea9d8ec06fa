"""The two endpoints every call of our users goes through, answered as plain ASGI.

``POST /v1/chat/completions`` and ``POST /v1/responses`` are the proxy's hot path: the app
hands them here before the framework's router, so a request costs the HTTP parse, a key check,
one relay upstream and a hand-off to the capture sink, and nothing else (no routing tables,
signature models or response objects: the framework cost as much per request as all of that;
see the README's Performance section). What the framework gave every other route is done here
too, by the same code: a NUL in the query is refused and a client that stops reading is cut
off (``proxy._edge``), errors are answered in OpenAI's shape by the one translation
(``proxy._errors.error_parts``), and a client that leaves mid-stream cancels the stream, which
the forwarder captures as abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Coroutine
from functools import partial
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from proxy._edge import SendWatch, carries_nul, refuse_nul
from proxy._errors import PayloadTooLarge, error_parts
from proxy.gateway._auth import Authenticator
from proxy.gateway._capture import CHAT, RESPONSES
from proxy.gateway._forward import Answer, Forwarder, check_content_type

_ENDPOINTS = {
    "/v1/chat/completions": CHAT,
    "/v1/chat/completions/": CHAT,
    "/v1/responses": RESPONSES,
    "/v1/responses/": RESPONSES,
}
_JSON = b"application/json"


class _ClientLeft(Exception):
    """The client hung up before its request body arrived: there is no one to answer."""


class HotPath:
    def __init__(
        self,
        forwarder: Forwarder,
        auth: Authenticator,
        *,
        max_body_bytes: int,
        write_timeout_seconds: float | None,
    ) -> None:
        self._forwarder = forwarder
        self._auth = auth
        self._max_body = max_body_bytes
        self._watch = (
            SendWatch(write_timeout_seconds) if write_timeout_seconds is not None else None
        )
        # Each API's answer as the ASGI app the watch runs, made once.
        self._apps: dict[str, ASGIApp] = {
            name: partial(self._respond, name) for name in (CHAT, RESPONSES)
        }

    @staticmethod
    def endpoint(scope: Scope) -> str | None:
        """The API (``chat`` or ``responses``) of a request this path answers; else None."""
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST":
            return None
        return _ENDPOINTS.get(scope["path"])

    def __call__(
        self, api: str, scope: Scope, receive: Receive, send: Send
    ) -> Coroutine[Any, Any, None]:
        # The coroutine is handed back, not awaited here: a frame fewer on every request.
        if carries_nul(scope):
            return refuse_nul(send)
        if self._watch is None:
            return self._respond(api, scope, receive, send)
        return self._watch.run(self._apps[api], scope, receive, send)

    async def _respond(self, api: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            authorization = content_type = encoding = length = None
            raw_headers = scope["headers"]
            for name, value in raw_headers:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                elif name == b"content-type":
                    content_type = value.decode("latin-1")
                elif name == b"content-encoding":
                    encoding = value.decode("latin-1")
                elif name == b"content-length":
                    length = value
            caller = await self._auth.caller(authorization)
            check_content_type(content_type)
            body = await self._body(receive, length)
            answer = await self._forwarder.create(
                api, caller, raw_headers, scope["query_string"], body, encoding
            )
        except _ClientLeft:
            return
        except Exception as exc:  # noqa: BLE001 - each becomes its answer in OpenAI's shape
            status, error, headers = error_parts(exc)
            answer = Answer(status, headers, error)
        await self._send(answer, receive, send)

    async def _body(self, receive: Receive, length: bytes | None) -> bytes:
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise self._too_large()
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientLeft
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body
        parts = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientLeft
            part: bytes = message.get("body", b"")
            size += len(part)
            if size > self._max_body:
                raise self._too_large()
            parts.append(part)
        return b"".join(parts)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The request body is larger than {self._max_body} bytes.",
            code="request_too_large",
        )

    async def _send(self, answer: Answer, receive: Receive, send: Send) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        if "content-type" not in answer.headers:
            headers.append((b"content-type", _JSON))
        if answer.chunks is None:
            headers.append((b"content-length", str(len(answer.body)).encode()))
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body, "more_body": False})
            return
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        pump = asyncio.ensure_future(_pump(answer.chunks, send))
        listener = asyncio.ensure_future(_client_leaves(receive))
        try:
            await asyncio.wait((pump, listener), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Whichever is still waiting: the stream, when the client left; else the listener.
            pump.cancel()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        if pump.cancelled() or not pump.done():
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            return
        # An upstream that cut the stream: raised on, so the server drops the connection and
        # the client sees a cut stream, never one that looks complete.
        pump.result()


async def _pump(chunks: AsyncGenerator[bytes, None], send: Send) -> None:
    # Closed here, whatever ends the loop: a stream cancelled between two chunks learns of it
    # now (and is captured as abandoned), not when the collector finds it.
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _client_leaves(receive: Receive) -> Message:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return message
