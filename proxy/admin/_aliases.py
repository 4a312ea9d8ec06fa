"""The alias admin API under /admin/aliases: weighted targets, versions, history, rollback.

Every change records who made it (``X-Stillroom-Actor``, else ``admin``) and why (``reason``).
A change is live in this process at once and in every replica within one route poll.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio.to_thread
from litestar import Controller, Request, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from pydantic import BaseModel, ConfigDict, Field

from finetune import (
    AliasConfig,
    AliasEventView,
    AliasVersionView,
    AliasView,
    alias_history,
    alias_versions,
    delete_alias,
    get_alias_view,
    list_alias_views,
    rollback_alias,
    set_alias,
)
from proxy._services import Services, services
from proxy.admin._base import admin_guard
from storage import session_scope

ACTOR_HEADER = "x-stillroom-actor"


class AliasWrite(AliasConfig):
    """A new version of an alias: its targets, weights and shadow rate, and why."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)
    action: Literal["update", "promote"] = "update"
    """How the change is named in the history."""


class AliasCreate(AliasWrite):
    name: str = Field(min_length=1, max_length=200)


class AliasRollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)
    to_version: int | None = Field(default=None, ge=1)
    """Default: the version that was current before the last change."""


class AliasDeleted(BaseModel):
    name: str
    deleted: bool


def actor_of(request: Request[Any, Any, Any]) -> str:
    """Who asked: the ``x-stillroom-actor`` header, or ``admin``."""
    given = (request.headers.get(ACTOR_HEADER) or "").strip()
    return given[:200] if given else "admin"


async def _write(
    request: Request[Any, Any, Any], name: str, data: AliasWrite, *, create_only: bool
) -> AliasView:
    found = services(request)
    actor = actor_of(request)
    config = AliasConfig(targets=data.targets, shadow_rate=data.shadow_rate)

    def run() -> AliasView:
        with session_scope(found.engine) as session:
            return set_alias(
                name,
                config,
                actor=actor,
                reason=data.reason,
                action=data.action,
                create_only=create_only,
                known_upstreams=found.upstream_names,
                session=session,
            )

    view = await anyio.to_thread.run_sync(run)
    await _refresh(found)
    return view


async def _refresh(found: Services) -> None:
    """This process routes by the change at once; the others pick it up on their next poll."""
    await anyio.to_thread.run_sync(found.routes.refresh)


class AliasesController(Controller):
    path = "/admin/aliases"
    guards = [admin_guard]
    tags = ["admin", "aliases"]

    @get("/")
    async def list_aliases(self, request: Request[Any, Any, Any]) -> list[AliasView]:
        """Every alias with its current version."""
        engine = services(request).engine

        def run() -> list[AliasView]:
            with session_scope(engine) as session:
                return list_alias_views(session=session)

        return await anyio.to_thread.run_sync(run)

    @post("/", status_code=201)
    async def create(
        self, request: Request[Any, Any, Any], data: JSONBody[AliasCreate]
    ) -> AliasView:
        """Create an alias (409 if it exists)."""
        return await _write(request, data.name, data, create_only=True)

    @put("/{name:str}")
    async def put_alias(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[AliasWrite]
    ) -> AliasView:
        """Write a new version and make it current; creates the alias if needed."""
        return await _write(request, name, data, create_only=False)

    @get("/{name:str}")
    async def get_alias(self, request: Request[Any, Any, Any], name: FromPath[str]) -> AliasView:
        engine = services(request).engine

        def run() -> AliasView:
            with session_scope(engine) as session:
                return get_alias_view(name, session=session)

        return await anyio.to_thread.run_sync(run)

    @get("/{name:str}/versions")
    async def versions(
        self, request: Request[Any, Any, Any], name: FromPath[str]
    ) -> list[AliasVersionView]:
        """Every version ever written, oldest first."""
        engine = services(request).engine

        def run() -> list[AliasVersionView]:
            with session_scope(engine) as session:
                return alias_versions(name, session=session)

        return await anyio.to_thread.run_sync(run)

    @get("/{name:str}/history")
    async def history(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        limit: FromQuery[int] = 100,
    ) -> list[AliasEventView]:
        """Who changed what, when and why; newest first; kept after deletion."""
        engine = services(request).engine
        bounded = max(1, min(limit, 1000))

        def run() -> list[AliasEventView]:
            with session_scope(engine) as session:
                return alias_history(name, session=session, limit=bounded)

        return await anyio.to_thread.run_sync(run)

    @post("/{name:str}/rollback", status_code=200)
    async def rollback(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        data: JSONBody[AliasRollback],
    ) -> AliasView:
        """Back to the version current before the last change (or ``to_version``)."""
        found = services(request)
        actor = actor_of(request)

        def run() -> AliasView:
            with session_scope(found.engine) as session:
                return rollback_alias(
                    name,
                    actor=actor,
                    reason=data.reason,
                    to_version=data.to_version,
                    session=session,
                )

        view = await anyio.to_thread.run_sync(run)
        await _refresh(found)
        return view

    @delete("/{name:str}", status_code=200)
    async def delete_alias(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        reason: FromQuery[str | None] = None,
    ) -> AliasDeleted:
        """Remove the alias: its name passes through as a plain model again."""
        found = services(request)
        actor = actor_of(request)

        def run() -> None:
            with session_scope(found.engine) as session:
                delete_alias(name, actor=actor, reason=reason, session=session)

        await anyio.to_thread.run_sync(run)
        await _refresh(found)
        return AliasDeleted(name=name, deleted=True)
