"""The sandbox upstream's HTTP surface (aiohttp): chat completions, responses, models, files,
fine-tuning.

Every response carries ``x-stillroom-sandbox: true`` and the start-up banner says plainly that
this is not OpenAI. It is for tests and ``make demo``; nothing makes it a default upstream.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from tests.sandbox._chat import completion, judge_verdict, stream_chunks
from tests.sandbox._jobs import Sandbox, SandboxConfig, SandboxError
from tests.sandbox._responses import response, stream_events

log = logging.getLogger("stillroom.sandbox")

SANDBOX_HEADER = "x-stillroom-sandbox"
BANNER = (
    "*** stillroom SANDBOX upstream: NOT OpenAI. Fake chat answers and fake fine-tuning, "
    "for tests and demos only. ***"
)
_SANDBOX_KEY: web.AppKey[Sandbox] = web.AppKey("sandbox", Sandbox)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _label_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except SandboxError as exc:
        response = web.json_response(exc.body(), status=exc.status)
    response.headers[SANDBOX_HEADER] = "true"
    return response


def _sandbox(request: web.Request) -> Sandbox:
    return request.app[_SANDBOX_KEY]


def _page(items: list[dict[str, Any]], request: web.Request) -> web.Response:
    """OpenAI's cursor pages: ``after`` an id, at most ``limit``, newest first."""
    limit = int(request.query.get("limit", "20"))
    after = request.query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return web.json_response(
        {"object": "list", "data": items[:limit], "has_more": len(items) > limit}
    )


async def _read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise SandboxError(
            400, "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise SandboxError(400, "The body must be a JSON object.", code="invalid_json")
    return body


_numbers = itertools.count(1)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await _read_json(request)
    sandbox = _sandbox(request)
    if sandbox.config.judge_seconds and judge_verdict(list(body.get("messages") or [])):
        await asyncio.sleep(sandbox.config.judge_seconds)
    whole = completion(sandbox, body, next(_numbers))
    if not body.get("stream"):
        return web.json_response(whole, headers={"x-request-id": f"req_sandbox_{whole['id'][-8:]}"})
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    response = web.StreamResponse(
        headers={"content-type": "text/event-stream", SANDBOX_HEADER: "true"}
    )
    await response.prepare(request)
    for chunk in stream_chunks(whole, include_usage):
        await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def responses(request: web.Request) -> web.StreamResponse:
    body = await _read_json(request)
    whole = response(_sandbox(request), body, next(_numbers))
    if not body.get("stream"):
        return web.json_response(whole)
    answer = web.StreamResponse(
        headers={"content-type": "text/event-stream", SANDBOX_HEADER: "true"}
    )
    await answer.prepare(request)
    for event in stream_events(whole):
        data = json.dumps(event).encode()
        await answer.write(b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n")
    await answer.write_eof()
    return answer


async def models(request: web.Request) -> web.Response:
    names = ["gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14"]
    names += _sandbox(request).models()
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "sandbox"} for n in names]
    return web.json_response({"object": "list", "data": data})


async def upload_file(request: web.Request) -> web.Response:
    form = await request.post()
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, web.FileField) or not isinstance(purpose, str):
        raise SandboxError(400, "'file' and 'purpose' are required", code="invalid")
    content = upload.file.read()
    return web.json_response(_sandbox(request).upload(upload.filename, purpose, content))


async def retrieve_file(request: web.Request) -> web.Response:
    return web.json_response(_sandbox(request).file(request.match_info["file_id"]))


async def create_job(request: web.Request) -> web.Response:
    return web.json_response(_sandbox(request).create_job(await _read_json(request)))


async def list_jobs(request: web.Request) -> web.Response:
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in request.query.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    return _page(_sandbox(request).list_jobs(metadata), request)


async def retrieve_job(request: web.Request) -> web.Response:
    return web.json_response(_sandbox(request).job(request.match_info["job_id"]))


async def job_events(request: web.Request) -> web.Response:
    return _page(_sandbox(request).events(request.match_info["job_id"]), request)


async def job_checkpoints(request: web.Request) -> web.Response:
    return _page(_sandbox(request).checkpoints(request.match_info["job_id"]), request)


async def cancel_job(request: web.Request) -> web.Response:
    return web.json_response(_sandbox(request).cancel(request.match_info["job_id"]))


def create_sandbox_app(config: SandboxConfig | None = None) -> web.Application:
    app = web.Application(middlewares=[_label_and_errors], client_max_size=512 * 1024 * 1024)
    app[_SANDBOX_KEY] = Sandbox(config or SandboxConfig())
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/files", upload_file)
    app.router.add_get("/v1/files/{file_id}", retrieve_file)
    app.router.add_post("/v1/fine_tuning/jobs", create_job)
    app.router.add_get("/v1/fine_tuning/jobs", list_jobs)
    app.router.add_get("/v1/fine_tuning/jobs/{job_id}", retrieve_job)
    app.router.add_get("/v1/fine_tuning/jobs/{job_id}/events", job_events)
    app.router.add_get("/v1/fine_tuning/jobs/{job_id}/checkpoints", job_checkpoints)
    app.router.add_post("/v1/fine_tuning/jobs/{job_id}/cancel", cancel_job)
    return app


def announce() -> None:
    print(BANNER, file=sys.stderr, flush=True)
    log.warning(BANNER)


@contextmanager
def running_sandbox(config: SandboxConfig | None = None) -> Iterator[str]:
    """The sandbox on a free loopback port in a background thread; yields its ``/v1`` URL."""
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def serve() -> None:
        runner = web.AppRunner(create_sandbox_app(config))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server  # aiohttp keeps the bound socket here
        found["port"] = server.sockets[0].getsockname()[1]
        found["stop"] = stop = asyncio.Event()
        found["loop"] = asyncio.get_running_loop()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the sandbox did not start")
    announce()
    try:
        yield f"http://127.0.0.1:{found['port']}/v1"
    finally:
        found["loop"].call_soon_threadsafe(found["stop"].set)
        thread.join(10)
