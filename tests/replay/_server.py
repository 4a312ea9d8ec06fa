"""A real HTTP server that answers with recorded OpenAI traffic, plus injectable faults.

It runs aiohttp on its own event loop in a background thread, so synchronous tests, async
tests and a proxy under test (in-process or not) can all talk to it over a real socket.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ._cassettes import Interaction, _parse_json, split_sse_events
from ._faults import CutStream, Delay, EndlessStream, ErrorReply, Fault, FaultPlan

__all__ = ["ReceivedRequest", "ReplayUpstream"]

# Hop-by-hop headers (RFC 9110 §7.6.1) plus the framing ones aiohttp must compute itself.
_DROPPED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_IGNORED_BODY_KEYS = frozenset({"stream_options"})
_DISCONNECT_POLL_SECONDS = 0.01


@dataclass(frozen=True)
class ReceivedRequest:
    """What the replay server was sent, as it arrived."""

    method: str
    path: str
    query: str
    headers: CIMultiDictProxy[str]
    body: bytes
    interaction: Interaction | None
    """The recording chosen to answer it, None when nothing matched."""

    def json(self) -> Any:
        return json.loads(self.body)


class ReplayUpstream:
    """Serve `interactions` on 127.0.0.1 at a free port while the context is open.

    `fault` applies to every request, `faults` to requests whose path is the key; a path
    entry wins over `fault`. Both can be changed later with `set_fault`.
    """

    def __init__(
        self,
        interactions: Iterable[Interaction],
        *,
        fault: FaultPlan | None = None,
        faults: Mapping[str, FaultPlan] | None = None,
    ) -> None:
        self.interactions: tuple[Interaction, ...] = tuple(interactions)
        self.received: list[ReceivedRequest] = []
        self.disconnects = 0
        """Responses the client abandoned before they were complete."""
        self._used: set[int] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._plans: dict[str | None, list[Fault | None] | Fault] = {}
        if fault is not None:
            self.set_fault(None, fault)
        for path, plan in (faults or {}).items():
            self.set_fault(path, plan)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Scheme, host and port, without a path."""
        if self._sock is None:
            raise RuntimeError("ReplayUpstream is not running; use it as a context manager")
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return f"{self.url}/v1"

    def set_fault(self, path: str | None, plan: FaultPlan | None) -> None:
        """Fault requests to `path` (every path when None); `plan=None` clears it."""
        with self._lock:
            if plan is None:
                self._plans.pop(path, None)
            elif isinstance(plan, ErrorReply | Delay | CutStream | EndlessStream):
                self._plans[path] = plan
            else:
                self._plans[path] = list(plan)

    def wait_for(self, predicate: Callable[[ReplayUpstream], bool], within: float = 5.0) -> bool:
        """Block until `predicate(self)` holds or `within` seconds pass; returns whether it held.

        Blocks the calling thread, so async tests should use `wait_for_async`.
        """
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), within)

    async def wait_for_async(
        self, predicate: Callable[[ReplayUpstream], bool], within: float = 5.0
    ) -> bool:
        deadline = time.monotonic() + within
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_DISCONNECT_POLL_SECONDS)
        return True

    def __enter__(self) -> ReplayUpstream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="replay-upstream", daemon=True)
        self._sock, self._loop, self._thread = sock, loop, thread
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(sock), loop).result(timeout=10)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    async def _start(self, sock: socket.socket) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown timeout, so an endless stream cannot hold up the test's teardown.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def _stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is not None and runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
        if self._sock is not None:
            self._sock.close()
        self._loop = self._thread = self._runner = self._sock = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._changed:
            interaction = self._match(request.method, request.path, body)
            fault = self._next_fault(request.path)
            self.received.append(
                ReceivedRequest(
                    request.method,
                    request.path,
                    request.query_string,
                    request.headers,
                    body,
                    interaction,
                )
            )
            self._changed.notify_all()
        if isinstance(fault, ErrorReply):
            return _error_response(fault)
        if isinstance(fault, EndlessStream):
            return await self._endless(request, fault)
        if isinstance(fault, Delay) and not await self._delay(request, fault.seconds):
            return web.Response(status=499)
        if interaction is None:
            return _no_match(request.method, request.path)
        if isinstance(fault, CutStream):
            return await self._cut(request, interaction, fault.after_events)
        if interaction.is_event_stream and interaction.content_encoding == "identity":
            return await self._stream(request, interaction)
        return web.Response(
            status=interaction.status,
            reason=interaction.reason or None,
            headers=_forwarded_headers(interaction),
            body=interaction.response_body,
        )

    def _match(self, method: str, path: str, body: bytes) -> Interaction | None:
        # aiohttp hands over the percent-decoded path; recordings keep the URI as sent.
        candidates = [
            (index, item)
            for index, item in enumerate(self.interactions)
            if item.method == method and unquote(item.path) == path
        ]
        if not candidates:
            return None
        incoming = _comparable(body)
        equal = [(i, item) for i, item in candidates if _comparable(item.request_body) == incoming]
        if not equal and isinstance(incoming, dict):
            # No recording of this very body: at least answer a stream with a stream.
            streamed = incoming.get("stream") is True
            candidates = [c for c in candidates if c[1].is_event_stream == streamed] or candidates
        unused = [(i, item) for i, item in equal or candidates if i not in self._used]
        # Replaying again once everything is used keeps repeated calls in one test working.
        index, chosen = (unused or equal or candidates)[0]
        self._used.add(index)
        return chosen

    def _next_fault(self, path: str) -> Fault | None:
        key: str | None = path if path in self._plans else None
        plan = self._plans.get(key)
        if isinstance(plan, list):
            return plan.pop(0) if plan else None
        return plan

    def _count_disconnect(self) -> None:
        with self._changed:
            self.disconnects += 1
            self._changed.notify_all()

    async def _delay(self, request: web.Request, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if _client_gone(request):
                self._count_disconnect()
                return False
            await asyncio.sleep(min(_DISCONNECT_POLL_SECONDS, deadline - time.monotonic()))
        return True

    async def _stream(self, request: web.Request, interaction: Interaction) -> web.StreamResponse:
        response = await _start_stream(
            request, interaction.status, _forwarded_headers(interaction), interaction.reason
        )
        try:
            for event in split_sse_events(interaction.response_body):
                # One write per event: aiohttp sends each as its own chunk, straight away.
                await response.write(event)
            await response.write_eof()
        except ConnectionResetError:
            self._count_disconnect()
        return response

    async def _cut(
        self, request: web.Request, interaction: Interaction, after_events: int
    ) -> web.StreamResponse:
        events = split_sse_events(interaction.decoded_body())
        headers = _forwarded_headers(interaction)
        headers.popall("content-encoding", None)
        response = await _start_stream(request, interaction.status, headers)
        try:
            for event in events[:after_events]:
                await response.write(event)
        except ConnectionResetError:
            self._count_disconnect()
            return response
        _close_connection(request)
        # aiohttp's write_eof on the closed transport raises ConnectionError, which it
        # treats as a client disconnect: no terminating chunk is ever sent.
        return response

    async def _endless(self, request: web.Request, fault: EndlessStream) -> web.StreamResponse:
        headers = CIMultiDict({"content-type": "text/event-stream; charset=utf-8"})
        headers["x-request-id"] = "req_replay_endless"
        response = await _start_stream(request, 200, headers)
        try:
            while True:
                await response.write(fault.event)
                await asyncio.sleep(fault.interval)
                if _client_gone(request):
                    raise ConnectionResetError("client went away")
        except ConnectionResetError:
            self._count_disconnect()
        return response


async def _start_stream(
    request: web.Request, status: int, headers: CIMultiDict[str], reason: str = ""
) -> web.StreamResponse:
    response = web.StreamResponse(status=status, reason=reason or None, headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    # aiohttp holds headers back until the first body write; real upstreams send them first.
    request.writer.send_headers()
    return response


def _forwarded_headers(interaction: Interaction) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in interaction.response_headers:
        if name.lower() not in _DROPPED_HEADERS:
            headers.add(name, value)
    return headers


def _error_response(fault: ErrorReply) -> web.Response:
    headers = CIMultiDict(fault.headers)
    if fault.raw_body is None:
        headers.setdefault("content-type", "application/json")
    return web.Response(status=fault.status, headers=headers, body=fault.body())


def _no_match(method: str, path: str) -> web.Response:
    error = {
        "message": f"No recorded interaction for {method} {path}.",
        "type": "invalid_request_error",
        "param": None,
        "code": "replay_no_match",
    }
    return web.json_response({"error": error}, status=404)


def _comparable(body: bytes) -> object:
    """JSON bodies compare by value without `stream_options`; other bodies byte for byte."""
    parsed = _parse_json(body)
    if isinstance(parsed, dict):
        return {k: v for k, v in parsed.items() if k not in _IGNORED_BODY_KEYS}
    return body if parsed is None else parsed


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _close_connection(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()
