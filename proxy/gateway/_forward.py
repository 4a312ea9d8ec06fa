"""The hot path: relay a request upstream and hand the exchange to the capture sink.

Non-streaming bodies are relayed as the bytes that came; streams chunk by chunk as they
arrive. Whatever happens - the upstream fails, times out or cuts the stream, the client
leaves - the exchange is handed to the sink exactly once, in a ``finally``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio.to_thread
import orjson
from multidict import CIMultiDict
from sqlalchemy import Engine

from finetune import Route, Target, history_of
from proxy._errors import (
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy._metrics import Metrics
from proxy.gateway._auth import Caller
from proxy.gateway._capture import CHAT, RESPONSES, Exchange, decode_body
from proxy.gateway._router import RouteTable
from proxy.gateway._shadow import ShadowRunner, send_shadow
from proxy.gateway._sink import CaptureSink
from proxy.gateway._translate import (
    StreamTranslator,
    chat_request,
    new_item_id,
    response_from_completion,
)
from proxy.gateway._upstream import Upstream, request_headers, response_headers
from storage import get_capture_by_completion_id, session_scope

log = logging.getLogger("stillroom.forward")

_EVENT_STREAM = "text/event-stream"
_JSON = "application/json"
_HISTORY_POLL_SECONDS = 0.05
_PATHS = {CHAT: "/chat/completions", RESPONSES: "/responses"}


@dataclass(slots=True)
class Answer:
    """What the client gets: a body, or (a stream) chunks as they come. Headers are lower-case
    and carry the content type; the sender adds the length of a body."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    chunks: AsyncGenerator[bytes, None] | None = None


def check_content_type(content_type: str | None) -> None:
    """A create call's body is JSON: anything declared otherwise is refused before it is read."""
    if content_type is not None and "json" not in content_type.lower():
        raise UnsupportedMediaType(
            f"Unsupported content type {content_type!r}: send 'application/json'.",
            code="unsupported_content_type",
        )


class Forwarder:
    def __init__(
        self,
        upstream: Upstream,
        sink: CaptureSink,
        metrics: Metrics,
        *,
        routes: RouteTable | None = None,
        shadows: ShadowRunner | None = None,
        extra_upstreams: Mapping[str, Upstream] | None = None,
        upstream_keys: Mapping[str, str] | None = None,
        upstream_model: Callable[[str, str], str] | None = None,
        max_request_bytes: int = 32 * 1024 * 1024,
        engine: Engine | None = None,
        history_wait_seconds: float = 1.0,
    ) -> None:
        self._upstream = upstream
        self._max_request_bytes = max_request_bytes
        self._sink = sink
        self._metrics = metrics
        self._chat_url = upstream.url("/chat/completions")
        self._routes = routes
        self._shadows = shadows
        self._upstreams = {upstream.name: upstream, **(extra_upstreams or {})}
        # Named upstreams with a key of their own; the others get the caller's upstream key.
        self._keys = dict(upstream_keys or {})
        # (upstream, model) -> the name that upstream knows the model by.
        self._upstream_model = upstream_model or _same_model
        # Where a translated Responses call finds the turns its previous_response_id names.
        self._engine = engine
        # A turn may name the response of a moment ago, still on its way to the store.
        self._history_wait = history_wait_seconds

    async def create(
        self,
        api: str,
        caller: Caller,
        raw_headers: Iterable[tuple[bytes, bytes]],
        query: bytes,
        body: bytes,
        encoding: str | None,
    ) -> Answer:
        """``POST /v1/chat/completions`` or ``/v1/responses`` (``api``): relayed, captured."""
        started = time.perf_counter()
        path = _PATHS[api]
        if encoding is not None:
            body = _decoded_request(body, encoding, self._max_request_bytes)
        payload = _parse_json_object(body)
        _check_stream_flag(payload)
        model = payload.get("model")
        exchange = Exchange(
            request=payload,
            api_key_id=caller.key_id,
            upstream=self._upstream.name,
            served_model=model if isinstance(model, str) else None,
            stream=payload.get("stream") is True,
            api=api,
        )
        headers = request_headers(raw_headers, caller.upstream_key)
        if encoding is not None:
            headers.popall("content-encoding", None)  # the body goes on decoded
        route = (
            self._routes.get(model) if self._routes is not None and isinstance(model, str) else None
        )
        if route is None:
            url = self._chat_url if api == CHAT and not query else self._upstream.url(path, query)
            upstream = await self._post(self._upstream, url, body, headers, exchange, started)
        else:
            upstream = await self._post_routed(route, payload, headers, query, exchange, started)
        exchange.ttfb_ms = _ms_since(started)
        exchange.status_code = upstream.status
        exchange.upstream_request_id = upstream.headers.get("x-request-id")
        exchange.content_encoding = upstream.headers.get("content-encoding")
        if exchange.translated and 200 <= upstream.status < 300:
            return await self._translated(upstream, payload, exchange, started)
        out_headers = response_headers(upstream.headers)
        content_type = upstream.headers.get("content-type", "")
        if exchange.stream and content_type.startswith(_EVENT_STREAM):
            return Answer(
                upstream.status, out_headers, chunks=self._relay_stream(upstream, exchange, started)
            )
        try:
            data = await upstream.read()
        except BaseException as exc:
            upstream.close()
            self._fail(exchange, started, exc)
            raise translate_failure(exc) from exc
        upstream.release()
        exchange.body = data
        self._finish(exchange, started)
        return Answer(upstream.status, out_headers, data)

    async def _post(
        self,
        upstream: Upstream,
        url: str,
        body: bytes,
        headers: CIMultiDict[str],
        exchange: Exchange,
        started: float,
    ) -> aiohttp.ClientResponse:
        try:
            return await upstream.session.post(url, data=body, headers=headers)
        except BaseException as exc:
            self._fail(exchange, started, exc)
            raise translate_failure(exc) from exc

    async def _post_routed(
        self,
        route: Route,
        payload: dict[str, Any],
        headers: CIMultiDict[str],
        query: bytes,
        exchange: Exchange,
        started: float,
    ) -> aiohttp.ClientResponse:
        """Send to the alias's picked target; a failing student falls back to the teacher once.

        Fallback happens only before anything reached the client: on a connection failure or
        any status of 400 or more, streaming or not. A 4xx counts too: a student refuses what
        its teacher takes (a prompt past its shorter context, a malformed tool call it wrote
        itself, an adapter a restarted replica lost), and a request that really is the
        client's mistake gets the teacher's own answer to it. The capture names what finally served and, in its
        metadata, ``stillroom_fallback_from`` (the student) and ``stillroom_fallback_reason``.
        """
        user = payload.get("user") or payload.get("safety_identifier")
        target = route.pick(user if isinstance(user, str) else None)
        exchange.alias = route.alias
        teacher = route.teacher
        if target.role != "student" or teacher is None or teacher == target:
            teacher = None
        upstream, sent_headers = self._target(target, headers, exchange, started)
        url, body, sent_headers = await self._prepare(
            upstream,
            self._upstream_model(target.upstream, target.model),
            payload,
            query,
            sent_headers,
            exchange,
        )
        if teacher is None:
            return await self._post(upstream, url, body, sent_headers, exchange, started)
        reason: str
        try:
            answer = await upstream.session.post(url, data=body, headers=sent_headers)
        except aiohttp.ClientError as exc:
            reason = f"connection: {exc}"
        except BaseException as exc:
            self._fail(exchange, started, exc)
            raise translate_failure(exc) from exc
        else:
            if answer.status < 400:
                if route.shadow_rate > 0 and random.random() < route.shadow_rate:
                    self._shadow(route.alias, teacher, payload, headers, exchange)
                return answer
            reason = f"status {answer.status}"
            answer.close()
        log.warning(
            "alias %s: student %s failed (%s); asking the teacher",
            route.alias,
            target.model,
            reason,
        )
        exchange.extra_metadata = {
            "stillroom_fallback_from": target.model,
            "stillroom_fallback_reason": reason[:500],
        }
        upstream, sent_headers = self._target(teacher, headers, exchange, started)
        url, body, sent_headers = await self._prepare(
            upstream,
            self._upstream_model(teacher.upstream, teacher.model),
            payload,
            query,
            sent_headers,
            exchange,
        )
        return await self._post(upstream, url, body, sent_headers, exchange, started)

    async def _prepare(
        self,
        upstream: Upstream,
        model: str,
        payload: dict[str, Any],
        query: bytes,
        headers: CIMultiDict[str],
        exchange: Exchange,
    ) -> tuple[str, bytes, CIMultiDict[str]]:
        """(url, body, headers) of the call to ``upstream``: as the client sent it with the
        target's model, or, for a Responses call to a chat-only upstream, as chat."""
        exchange.translated = exchange.api == RESPONSES and upstream.api == CHAT
        if not exchange.translated:
            body = orjson.dumps({**payload, "model": model})
            return upstream.url(_PATHS[exchange.api], query), body, headers
        history: list[dict[str, Any]] = []
        previous = payload.get("previous_response_id")
        if isinstance(previous, str) and self._engine is not None:
            deadline = time.monotonic() + self._history_wait
            for _ in range(int(self._history_wait / _HISTORY_POLL_SECONDS) + 1):
                found = await anyio.to_thread.run_sync(_history, self._engine, previous)
                if found is not None or time.monotonic() >= deadline:
                    break
                await anyio.sleep(_HISTORY_POLL_SECONDS)
            history = found or []
        body = orjson.dumps(chat_request(payload, model, history))
        # The answer is read to be translated: it must come as plain bytes.
        plain = headers.copy()
        plain["accept-encoding"] = "identity"
        return upstream.url(_PATHS[CHAT], query), body, plain

    def _target(
        self, target: Target, headers: CIMultiDict[str], exchange: Exchange, started: float
    ) -> tuple[Upstream, CIMultiDict[str]]:
        exchange.upstream = target.upstream
        exchange.served_model = target.model
        upstream = self._upstreams.get(target.upstream)
        if upstream is None:
            error = UpstreamUnavailable(
                f"Alias {exchange.alias!r} routes to upstream {target.upstream!r}, "
                "which is not configured.",
                code="unknown_upstream",
            )
            exchange.error_kind = "connection"
            exchange.error_message = error.message
            self._finish(exchange, started)
            raise error
        key = self._keys.get(target.upstream)
        if key is None:
            return upstream, headers
        own = headers.copy()
        own["authorization"] = f"Bearer {key}"
        return upstream, own

    def _shadow(
        self,
        alias: str,
        teacher: Target,
        payload: dict[str, Any],
        headers: CIMultiDict[str],
        served: Exchange,
    ) -> None:
        upstream = self._upstreams.get(teacher.upstream)
        if self._shadows is None or upstream is None:
            return
        key = self._keys.get(teacher.upstream)
        if key is not None:
            headers = headers.copy()
            headers["authorization"] = f"Bearer {key}"
        self._shadows.submit(
            send_shadow(
                api=served.api,
                upstream=upstream,
                teacher=teacher,
                alias=alias,
                payload=payload,
                headers=headers,
                served_capture_id=served.capture_id,
                api_key_id=served.api_key_id,
                sink=self._sink,
                metrics=self._metrics,
            )
        )

    async def _translated(
        self,
        upstream: aiohttp.ClientResponse,
        payload: dict[str, Any],
        exchange: Exchange,
        started: float,
    ) -> Answer:
        """A chat-only upstream's answer, as the Responses object or events asked for."""
        response_id = new_item_id("resp")
        out_headers = {
            k: v
            for k, v in response_headers(upstream.headers).items()
            if k not in ("content-type", "content-length", "content-encoding")
        }
        exchange.content_encoding = None
        exchange.extra_metadata = {
            **(exchange.extra_metadata or {}),
            "stillroom_upstream_api": CHAT,
        }
        content_type = upstream.headers.get("content-type", "")
        if exchange.stream and content_type.startswith(_EVENT_STREAM):
            translator = StreamTranslator(payload, response_id)
            out_headers["content-type"] = _EVENT_STREAM
            return Answer(
                upstream.status,
                out_headers,
                chunks=self._relay_stream(upstream, exchange, started, translator),
            )
        try:
            data = decode_body(await upstream.read(), upstream.headers.get("content-encoding"))
        except BaseException as exc:
            upstream.close()
            self._fail(exchange, started, exc)
            raise translate_failure(exc) from exc
        upstream.release()
        try:
            completion = orjson.loads(data)
        except orjson.JSONDecodeError:
            completion = None
        if not isinstance(completion, dict):
            exchange.body = data
            self._finish(exchange, started)
            raise UpstreamUnavailable(
                "The chat upstream's answer was not a chat completion.", code="upstream_invalid"
            )
        body = orjson.dumps(response_from_completion(completion, payload, response_id))
        exchange.body = body
        self._finish(exchange, started)
        out_headers["content-type"] = _JSON
        return Answer(upstream.status, out_headers, body)

    async def _relay_stream(
        self,
        upstream: aiohttp.ClientResponse,
        exchange: Exchange,
        started: float,
        translator: StreamTranslator | None = None,
    ) -> AsyncGenerator[bytes, None]:
        chunks: list[bytes] = []
        completed = False
        try:
            async for chunk in upstream.content.iter_any():
                if not chunks:
                    exchange.ttfb_ms = _ms_since(started)
                if translator is not None:
                    chunk = translator.feed(chunk)
                    if not chunk:
                        continue
                chunks.append(chunk)
                yield chunk
            if translator is not None and not translator.completed:
                # The chat stream ended without [DONE]: the answer is whole all the same.
                tail = translator.finish()
                chunks.append(tail)
                yield tail
            completed = True
        except (TimeoutError, aiohttp.ClientError) as exc:
            exchange.error_kind = (
                "timeout" if isinstance(exc, asyncio.TimeoutError) else "stream_cut"
            )
            exchange.error_message = f"upstream stream ended early: {exc or type(exc).__name__}"
            # Re-raised so the server drops the connection: the client must see a cut stream,
            # not a stream that looks complete.
            raise
        except (asyncio.CancelledError, GeneratorExit):
            exchange.abandoned = True
            exchange.error_kind = "client_abandoned"
            exchange.error_message = "the client closed the connection before the stream ended"
            raise
        finally:
            if completed:
                upstream.release()
            else:
                upstream.close()
            exchange.body = b"".join(chunks)
            self._finish(exchange, started)

    def _fail(self, exchange: Exchange, started: float, exc: BaseException) -> None:
        if isinstance(exc, asyncio.TimeoutError):
            exchange.error_kind = "timeout"
            exchange.error_message = "the upstream did not answer in time"
        elif isinstance(exc, asyncio.CancelledError):
            exchange.abandoned = True
            exchange.error_kind = "client_abandoned"
            exchange.error_message = "the request was cancelled before the upstream answered"
        else:
            exchange.error_kind = "connection"
            exchange.error_message = f"could not reach the upstream: {exc}"
        log.warning("%s call failed upstream: %s", exchange.api, exchange.error_message)
        self._finish(exchange, started)

    def _finish(self, exchange: Exchange, started: float) -> None:
        exchange.total_ms = _ms_since(started)
        self._sink.submit(exchange)
        self._metrics.observe(exchange.api, exchange.status_code, exchange.total_ms)


def _history(engine: Engine, previous_id: str) -> list[dict[str, Any]] | None:
    """The thread up to ``previous_id``; None while that response is not in the store."""
    with session_scope(engine) as session:
        if get_capture_by_completion_id(previous_id, session=session, api=RESPONSES) is None:
            return None
        return history_of(previous_id, session=session)


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return payload


def _decoded_request(body: bytes, encoding: str, limit: int) -> bytes:
    """A compressed request body, decoded (and bounded: a small bomb is no large body)."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Unsupported Content-Encoding {encoding!r}: send gzip, deflate or none.",
            code="unsupported_content_encoding",
        )
    wbits = 16 + zlib.MAX_WBITS if name != "deflate" else zlib.MAX_WBITS
    decoder = zlib.decompressobj(wbits=wbits)
    try:
        decoded = decoder.decompress(body, limit)
    except zlib.error as exc:
        raise InvalidRequest(
            f"The request body is not valid {name}: {exc}", code="invalid_encoding"
        ) from None
    if decoder.unconsumed_tail:
        raise PayloadTooLarge(
            f"The decoded request body is larger than {limit} bytes.", code="request_too_large"
        )
    return decoded


_JSON_TYPES = {str: "a string", int: "an integer", float: "a decimal", dict: "an object"}


def _check_stream_flag(payload: dict[str, Any]) -> None:
    """``stream`` is a boolean or null, as OpenAI's API has it, which refuses anything else."""
    stream = payload.get("stream")
    if stream is None or isinstance(stream, bool):
        return
    kind = _JSON_TYPES.get(type(stream), "an array")
    raise InvalidRequest(
        f"Invalid type for 'stream': expected a boolean, but got {kind} instead.",
        param="stream",
        code="invalid_type",
    )


def translate_failure(exc: BaseException) -> BaseException:
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout("The upstream did not answer in time.", code="upstream_timeout")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamUnavailable(
            f"Could not reach the upstream: {exc}", code="upstream_unreachable"
        )
    return exc


def _same_model(_: str, model: str) -> str:
    return model


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
