"""The route table each process holds in memory, and the poll that keeps it current.

The hot path only reads ``RouteTable.get``: a dict lookup, no I/O. A background task asks the
database for the routes' generation (a count and a max over the alias events: one cheap
query) every ``refresh_seconds`` and reloads the table only when it moved, so a change made
through any replica reaches every other replica within about one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import anyio.to_thread
from sqlalchemy import Engine

from finetune import (
    Route,
    ServedUpstream,
    StudentServing,
    load_routes,
    local_student_locator,
)
from finetune.training.local import LocalTrainingConfig
from proxy._settings import Settings
from proxy.gateway._upstream import Upstream
from storage import OutageLog, route_generation, session_scope

log = logging.getLogger("stillroom.routes")


class RouteTable:
    def __init__(self, engine: Engine, *, refresh_seconds: float) -> None:
        self._engine = engine
        self._refresh_seconds = refresh_seconds
        self._routes: dict[str, Route] = {}
        self._generation: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._outage = OutageLog(log, "route table refresh")

    def get(self, model: str) -> Route | None:
        return self._routes.get(model)

    def routes(self) -> dict[str, Route]:
        return self._routes

    def refresh(self) -> bool:
        """Reload when the generation moved; blocking, so it runs in a worker thread."""
        with session_scope(self._engine) as session:
            generation = route_generation(session=session)
            if generation == self._generation:
                return False
            # Read after the generation: a change committed in between is loaded now and
            # loaded again on the next poll, never missed.
            routes = load_routes(session=session)
        # One reference swap: a request sees the old table or the new one, never a mix.
        self._routes = routes
        self._generation = generation
        log.info("route table loaded: %d aliases, generation %s", len(routes), generation)
        return True

    async def start(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.refresh)
        except Exception as exc:  # noqa: BLE001 - a store that is down at start is retried
            log.warning("could not load the route table yet: %s", str(exc).splitlines()[0])
        self._task = asyncio.create_task(self._poll(), name="stillroom-route-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except Exception as exc:  # noqa: BLE001 - keep routing on the last table; say why
                self._outage.failed(exc, self._refresh_seconds)
            else:
                self._outage.succeeded()


def named_upstreams(settings: Settings) -> tuple[dict[str, Upstream], dict[str, str]]:
    """The extra upstreams alias targets may name, and the keys of those that have one."""
    upstreams = {
        name: Upstream(
            name=name,
            base_url=config.base_url,
            timeout_seconds=settings.upstream_timeout_seconds,
            connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
            api=config.api,
        )
        for name, config in settings.upstreams.items()
    }
    keys = {
        name: config.api_key.get_secret_value()
        for name, config in settings.upstreams.items()
        if config.api_key is not None
    }
    return upstreams, keys


def student_serving(settings: Settings) -> StudentServing:
    """Loads self-hosted students on the named upstreams that serve them. A local student's
    weights lie in its job folder under the ``root`` of a local training backend."""
    served = {
        name: ServedUpstream(
            name=name,
            kind=config.kind,
            replicas=config.replica_urls,
            api_key=config.api_key.get_secret_value() if config.api_key else None,
        )
        for name, config in settings.upstreams.items()
    }
    return StudentServing(served, local_student_locator(training_roots(settings)))


def training_roots(settings: Settings) -> list[Path]:
    """The job-folder roots of the configured training backends that keep one (``root``)."""
    roots = []
    for config in settings.training_backends.values():
        if config.kind == "local":
            # Its default root too; absolute, since a vLLM replica is told the adapter's path.
            local = LocalTrainingConfig.model_validate(config.model_extra or {})
            roots.append(local.root.resolve())
    return roots
