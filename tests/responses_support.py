"""Shared pieces of the Responses API tests: the app over replayed upstreams, clients, and
reading the captures once the writer has stored them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import httpx2
import openai
from litestar import Litestar
from sqlalchemy import Engine
from sqlmodel import col, select

from proxy import Settings, create_app
from storage import Capture, session_scope

ADMIN = {"authorization": "Bearer admin-secret"}


def responses_app(
    database_url: str,
    tmp_path: Path,
    teacher_url: str,
    upstreams: dict[str, dict[str, Any]] | None = None,
) -> Litestar:
    settings = Settings(
        database_url=database_url,
        upstream_base_url=teacher_url,
        upstreams=upstreams or {},
        admin_key="admin-secret",
        spool_dir=tmp_path / "spool",
        capture_flush_seconds=0.05,
    )
    return create_app(settings)


def http(app: Litestar) -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=cast(Any, app))
    return httpx2.AsyncClient(transport=transport, base_url="http://stillroom.test")


def sdk(app: Litestar) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-client-key",
        base_url="http://stillroom.test/v1",
        http_client=http(app),
        max_retries=0,
    )


async def captures(engine: Engine, count: int) -> list[Capture]:
    """The first ``count`` captures, oldest first, once the writer has stored them."""
    for _ in range(200):
        with session_scope(engine) as session:
            rows = list(session.exec(select(Capture).order_by(col(Capture.id))).all())
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} captures were not written")
