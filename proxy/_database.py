"""Whether the store can take captures: reachable, and at the schema this code needs.

``stillroom serve`` starts while the database is down: the proxy forwards, captures go to
the spool, and this watch keeps asking. Once the database answers it is migrated (when
``settings.migrate``) and the capture writer is let through, which then replays the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading

import anyio.to_thread
from sqlalchemy import Engine

from storage import OutageLog, current_revision, head_revision, upgrade

log = logging.getLogger("stillroom.database")
# The migration scripts ship with the code: their head cannot move while the process runs.
_head_revision = functools.cache(head_revision)


class DatabaseWatch:
    def __init__(self, engine: Engine, *, migrate: bool, poll_seconds: float = 2.0) -> None:
        self._engine = engine
        self._migrate = migrate
        self._poll_seconds = poll_seconds
        self.schema_ready = threading.Event()
        """Set once the database answered at the head revision; never cleared."""
        self.problem: str | None = "not checked yet"
        self._outage = OutageLog(log, "schema check")
        self._task: asyncio.Task[None] | None = None

    def check(self) -> bool:
        """Blocking: is the schema at head (migrating it when allowed)? Records why not."""
        try:
            head = _head_revision()
            revision = current_revision(self._engine)
            if revision != head and self._migrate:
                upgrade(self._engine)
                revision = current_revision(self._engine)
                log.warning("database migrated to %s", revision)
        except Exception as exc:  # noqa: BLE001 - down, or a migration that failed: say why
            self._outage.failed(exc, self._poll_seconds)
            self.problem = "database unavailable: " + (str(exc).splitlines() or ["?"])[0][:200]
            return False
        self._outage.succeeded()
        if revision != head:
            self.problem = (
                f"database schema at {revision}, this stillroom needs {head}: "
                "run `stillroom migrate`"
            )
            return False
        self.problem = None
        self.schema_ready.set()
        return True

    async def start(self) -> None:
        if not await anyio.to_thread.run_sync(self.check):
            log.warning("serving without the database (%s); captures are spooled", self.problem)
            self._task = asyncio.create_task(self._poll(), name="stillroom-database-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            if await anyio.to_thread.run_sync(self.check):
                break
        log.warning("database ready: captures are written again and the spool replayed")
