"""Shadow traffic: a sample of a student's requests also goes to the teacher, in the background.

The client never waits for it and never sees it; the teacher's answer becomes a capture of its
own, tagged ``shadow`` with ``stillroom_shadow_of`` naming the served capture, so it is both
training data and an online comparison. The shadow request is always non-streaming: what is
wanted is the complete answer. At most ``max_in_flight`` run at once; beyond that a shadow is
skipped (and counted) rather than queued, so a slow teacher cannot pile up memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from finetune import Target
from proxy._metrics import Metrics
from proxy.gateway._capture import CHAT, RESPONSES, Exchange
from proxy.gateway._sink import CaptureSink
from proxy.gateway._upstream import Upstream

log = logging.getLogger("stillroom.shadow")

SHADOW_TAG = "shadow"
SHADOW_OF = "stillroom_shadow_of"


class ShadowRunner:
    """Owns every background task it starts: bounded, logged when they fail, awaited on close."""

    def __init__(self, *, max_in_flight: int) -> None:
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0
        self.failed = 0

    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, work: Coroutine[Any, Any, None]) -> bool:
        if len(self._tasks) >= self._max_in_flight:
            work.close()
            self.skipped += 1
            return False
        task = asyncio.create_task(work, name="stillroom-shadow")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.failed += 1
            log.error("shadow request failed", exc_info=error)

    async def close(self, grace_seconds: float) -> None:
        """Let running shadows finish for up to ``grace_seconds``, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


async def send_shadow(
    *,
    api: str = CHAT,
    upstream: Upstream,
    teacher: Target,
    alias: str,
    payload: dict[str, Any],
    headers: CIMultiDict[str],
    served_capture_id: str,
    api_key_id: str | None,
    sink: CaptureSink,
    metrics: Metrics,
) -> None:
    """Ask the teacher what the student was asked, and capture its answer."""
    started = time.perf_counter()
    sent = {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}
    sent["model"] = teacher.model
    exchange = Exchange(
        request=payload,
        api_key_id=api_key_id,
        upstream=teacher.upstream,
        served_model=teacher.model,
        alias=alias,
        api=api,
        extra_tags=[SHADOW_TAG],
        extra_metadata={SHADOW_OF: served_capture_id},
    )
    try:
        async with upstream.session.post(
            upstream.url("/responses" if api == RESPONSES else "/chat/completions"),
            data=orjson.dumps(sent),
            headers=headers,
        ) as answer:
            exchange.status_code = answer.status
            exchange.upstream_request_id = answer.headers.get("x-request-id")
            exchange.content_encoding = answer.headers.get("content-encoding")
            exchange.ttfb_ms = _ms_since(started)
            exchange.body = await answer.read()
    except asyncio.CancelledError:
        exchange.error_kind = "client_abandoned"
        exchange.error_message = "the shadow request was cancelled at shutdown"
        raise
    except (TimeoutError, aiohttp.ClientError) as exc:
        exchange.error_kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
        exchange.error_message = f"shadow request to the teacher failed: {exc!r}"
    finally:
        exchange.total_ms = _ms_since(started)
        sink.submit(exchange)
        metrics.observe("shadow", exchange.status_code, exchange.total_ms)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
