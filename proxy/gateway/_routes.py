"""The OpenAI surface under /v1, and the health and metrics probes. Handlers stay thin.

The two create calls, ``POST /v1/chat/completions`` and ``POST /v1/responses``, are not here:
the app answers them before routing (``_hot``).
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import orjson
from litestar import Request, Response, delete, get, post, route
from litestar.params import FromPath
from sqlalchemy import text

from proxy._errors import InvalidRequest
from proxy._services import services

_JSON = "application/json"


def _json(body: dict[str, Any], status_code: int = 200) -> Response[bytes]:
    return Response(orjson.dumps(body), status_code=status_code, media_type=_JSON)


@get("/v1/responses/{response_id:str}", include_in_schema=False)
async def retrieve_response(
    request: Request[Any, Any, Any], response_id: FromPath[str]
) -> Response[Any]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    # A streamed retrieve replays the upstream's events: only the upstream has those.
    stored = (
        None
        if request.query_params.get("stream") == "true"
        else await found.stored_responses.retrieve(caller, response_id)
    )
    if stored is None:
        return await found.passthrough.forward(request, caller)
    return _json(stored)


@delete("/v1/responses/{response_id:str}", status_code=200, include_in_schema=False)
async def delete_response(
    request: Request[Any, Any, Any], response_id: FromPath[str]
) -> Response[Any]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    deleted = await found.stored_responses.delete(caller, response_id)
    if deleted is None:
        return await found.passthrough.forward(request, caller)
    return _json(deleted)


@get("/v1/responses/{response_id:str}/input_items", include_in_schema=False)
async def list_response_input_items(
    request: Request[Any, Any, Any], response_id: FromPath[str]
) -> Response[Any]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    query = dict(request.query_params)
    listed = await found.stored_responses.input_items(caller, response_id, query)
    if listed is None:
        return await found.passthrough.forward(request, caller)
    return _json(listed)


@get("/v1/chat/completions", include_in_schema=False)
async def list_chat_completions(request: Request[Any, Any, Any]) -> Response[bytes]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    return _json(await found.stored.list(caller, dict(request.query_params)))


@get("/v1/chat/completions/{completion_id:str}", include_in_schema=False)
async def retrieve_chat_completion(
    request: Request[Any, Any, Any], completion_id: FromPath[str]
) -> Response[bytes]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    return _json(await found.stored.retrieve(caller, completion_id))


@post("/v1/chat/completions/{completion_id:str}", status_code=200, include_in_schema=False)
async def update_chat_completion(
    request: Request[Any, Any, Any], completion_id: FromPath[str]
) -> Response[bytes]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body must be JSON.", code="invalid_json") from None
    return _json(await found.stored.update(caller, completion_id, body))


@delete("/v1/chat/completions/{completion_id:str}", status_code=200, include_in_schema=False)
async def delete_chat_completion(
    request: Request[Any, Any, Any], completion_id: FromPath[str]
) -> Response[bytes]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    return _json(await found.stored.delete(caller, completion_id))


@get("/v1/chat/completions/{completion_id:str}/messages", include_in_schema=False)
async def list_chat_completion_messages(
    request: Request[Any, Any, Any], completion_id: FromPath[str]
) -> Response[bytes]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    return _json(await found.stored.messages(caller, completion_id, dict(request.query_params)))


@route(
    "/v1/{path:path}",
    http_method=["GET", "POST", "PUT", "PATCH", "DELETE"],
    status_code=200,
    include_in_schema=False,
    request_max_body_size=None,
)
async def pass_through(request: Request[Any, Any, Any]) -> Response[Any]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    return await found.passthrough.forward(request, caller)


@get("/healthz", include_in_schema=False)
async def healthz() -> Response[bytes]:
    return _json({"status": "ok"})


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ready: forwarding and capturing. Degraded (still 200): forwarding, with captures held
    in the spool until the database can take them. Unavailable (503): captures would be lost.
    """
    found = services(request)
    queued = found.sink.pending()
    if not found.sink.writer_running():
        body = {"status": "unavailable", "reason": "the capture writer is not running"}
        return _json({**body, "capture_queue": queued}, 503)

    def ping() -> None:
        with found.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    reason = found.database.problem or found.sink.database_state()
    if reason is None:
        try:
            await anyio.to_thread.run_sync(ping)
        except Exception as exc:  # noqa: BLE001 - any failure is a reason, and says which
            reason = "database unavailable: " + (str(exc).splitlines() or ["?"])[0][:200]
    if reason is not None:
        body = {"status": "degraded", "reason": reason, "database": "unavailable"}
        return _json({**body, "capture_queue": queued, "spool_bytes": found.sink.spool_bytes()})
    return _json({"status": "ready", "database": "ok", "capture_queue": queued})


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = services(request).metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


ROUTES = [
    list_chat_completions,
    retrieve_chat_completion,
    update_chat_completion,
    delete_chat_completion,
    list_chat_completion_messages,
    retrieve_response,
    delete_response,
    list_response_input_items,
    pass_through,
    healthz,
    readyz,
    metrics,
]
