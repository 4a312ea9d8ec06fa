"""Every other ``/v1`` path (files, models, embeddings, fine-tuning jobs, ...): method, body,
status and content type relayed as they are, and nothing captured."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from litestar import Request, Response
from litestar.response import Stream

from proxy._metrics import Metrics
from proxy.gateway._auth import Caller
from proxy.gateway._forward import translate_failure
from proxy.gateway._upstream import Upstream, request_headers, response_headers

# Bodies up to this size come back with a Content-Length; larger ones stream through.
_BUFFER_LIMIT = 1024 * 1024


class PassThrough:
    """Every other ``/v1`` path: method, body, status and content type as they are."""

    def __init__(self, upstream: Upstream, metrics: Metrics) -> None:
        self._upstream = upstream
        self._metrics = metrics

    async def forward(self, request: Request[Any, Any, Any], caller: Caller) -> Response[Any]:
        started = time.perf_counter()
        scope = request.scope
        path = scope["path"].removeprefix("/v1")
        has_body = request.method not in ("GET", "HEAD") and (
            "content-length" in request.headers or "transfer-encoding" in request.headers
        )
        headers = request_headers(scope["headers"], caller.upstream_key, keep_length=True)
        try:
            upstream = await self._upstream.session.request(
                request.method,
                self._upstream.url(path, scope["query_string"]),
                headers=headers,
                data=request.stream() if has_body else None,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._metrics.observe(
                "passthrough", 502, round((time.perf_counter() - started) * 1000, 3)
            )
            raise translate_failure(exc) from exc
        out_headers = response_headers(upstream.headers)
        length = upstream.content_length
        if length is not None and length <= _BUFFER_LIMIT:
            try:
                data = await upstream.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                upstream.close()
                raise translate_failure(exc) from exc
            upstream.release()
            self._metrics.observe(
                "passthrough", upstream.status, round((time.perf_counter() - started) * 1000, 3)
            )
            return Response(data, status_code=upstream.status, headers=out_headers)
        self._metrics.observe(
            "passthrough", upstream.status, round((time.perf_counter() - started) * 1000, 3)
        )
        return Stream(
            _relay(upstream),
            status_code=upstream.status,
            headers=out_headers,
        )


async def _relay(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    completed = False
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
        completed = True
    finally:
        if completed:
            upstream.release()
        else:
            upstream.close()
