"""``GET /v1/models``: the upstream's models, followed by the aliases clients can call.

An alias is listed as ``{"id", "object": "model", "created", "owned_by": "stillroom"}``. An
upstream error, and the whole answer while there are no aliases, pass through unchanged.
"""

from __future__ import annotations

import zlib
from typing import Any

import aiohttp
import orjson
from litestar import Request, Response, get

from finetune import Route
from proxy._errors import UpstreamTimeout, UpstreamUnavailable
from proxy._services import services
from proxy.gateway._capture import decode_body
from proxy.gateway._upstream import request_headers, response_headers

ALIAS_OWNER = "stillroom"


def alias_entries(routes: dict[str, Route]) -> list[dict[str, Any]]:
    return [
        {"id": name, "object": "model", "created": routes[name].created, "owned_by": ALIAS_OWNER}
        for name in sorted(routes)
    ]


def with_aliases(listing: Any, aliases: list[dict[str, Any]]) -> Any:
    """The upstream's list with the aliases appended; an alias hides a model of its name."""
    if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        return listing
    names = {entry["id"] for entry in aliases}
    kept = [m for m in listing["data"] if not (isinstance(m, dict) and m.get("id") in names)]
    return {**listing, "data": [*kept, *aliases]}


@get("/v1/models", include_in_schema=False)
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    upstream = found.upstream
    headers = request_headers(request.scope["headers"], caller.upstream_key)
    try:
        async with upstream.session.get(
            upstream.url("/models", request.scope["query_string"]), headers=headers
        ) as answer:
            body = await answer.read()
            status, out_headers = answer.status, response_headers(answer.headers)
            encoding = answer.headers.get("content-encoding")
    except TimeoutError as exc:
        raise UpstreamTimeout(
            "The upstream did not answer in time.", code="upstream_timeout"
        ) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(
            f"Could not reach the upstream: {exc}", code="upstream_unreachable"
        ) from exc
    routes = found.routes.routes()
    # Without aliases, the upstream's bytes go back as they came, as on every /v1 path.
    if status != 200 or not routes:
        return Response(body, status_code=status, headers=out_headers)
    try:
        listing = orjson.loads(decode_body(body, encoding))
    except (ValueError, zlib.error):
        return Response(body, status_code=status, headers=out_headers)
    out_headers.pop("content-encoding", None)
    out_headers["content-type"] = "application/json"
    aliases = alias_entries(routes)
    return Response(
        orjson.dumps(with_aliases(listing, aliases)), status_code=200, headers=out_headers
    )
