"""The admin API under /admin: its own key, documented at /admin/docs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread
from litestar import Controller, Request, delete, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, JSONBody
from pydantic import BaseModel, Field

from proxy._errors import NotFound
from proxy._services import services
from proxy.gateway._auth import check_admin
from storage import (
    count_captures,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    session_scope,
)


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    settings = connection.app.state.services.settings
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    check_admin(connection.headers.get("authorization"), admin_key)


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class KeyPublic(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    secret: str
    """Shown once: stillroom keeps only its hash."""


class Stats(BaseModel):
    captures: int
    capture_queue: int
    spool_bytes: int
    upstream_base_url: str
    """The default upstream, without any user or password the URL may carry."""


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


class AdminController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["admin"]

    @get("/stats")
    async def stats(self, request: Request[Any, Any, Any]) -> Stats:
        found = services(request)

        def run() -> int:
            with session_scope(found.engine) as session:
                return count_captures(session=session)

        captures = await anyio.to_thread.run_sync(run)
        return Stats(
            captures=captures,
            capture_queue=found.sink.pending(),
            spool_bytes=found.sink.spool_bytes(),
            upstream_base_url=_without_userinfo(found.settings.upstream_base_url),
        )

    @get("/keys")
    async def list_keys(self, request: Request[Any, Any, Any]) -> list[KeyPublic]:
        engine = services(request).engine

        def run() -> list[KeyPublic]:
            with session_scope(engine) as session:
                return [
                    KeyPublic.model_validate(k, from_attributes=True)
                    for k in list_api_keys(session=session)
                ]

        return await anyio.to_thread.run_sync(run)

    @post("/keys", status_code=201)
    async def create_key(
        self, request: Request[Any, Any, Any], data: JSONBody[KeyCreate]
    ) -> KeyCreated:
        engine = services(request).engine

        def run() -> KeyCreated:
            with session_scope(engine) as session:
                key, secret = create_api_key(data.name, session=session)
                public = KeyPublic.model_validate(key, from_attributes=True)
                return KeyCreated(**public.model_dump(), secret=secret)

        return await anyio.to_thread.run_sync(run)

    @delete("/keys/{key_id:str}", status_code=200)
    async def revoke_key(self, request: Request[Any, Any, Any], key_id: FromPath[str]) -> KeyPublic:
        engine = services(request).engine

        def run() -> KeyPublic:
            with session_scope(engine) as session:
                key = revoke_api_key(key_id, session=session)
                if key is None:
                    raise NotFound(f"No key '{key_id}'.", code="not_found")
                return KeyPublic.model_validate(key, from_attributes=True)

        return await anyio.to_thread.run_sync(run)
