"""A background loop's account of a database outage: one line when it starts, one when it
ends, instead of a traceback on every failed round."""

from __future__ import annotations

import logging
import time

from storage._engine import database_unreachable


class OutageLog:
    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, error: BaseException, retry_seconds: float) -> None:
        """A round failed: say so once per outage; anything but an outage is a bug, in full."""
        if not database_unreachable(error):
            self._log.error(
                "%s failed; retrying in %.0f s", self._what, retry_seconds, exc_info=error
            )
            return
        if self._down_since is None:
            self._down_since = time.monotonic()
            first_line = (str(error).splitlines() or [type(error).__name__])[0][:200]
            self._log.warning(
                "%s: the database is unavailable (%s); retrying every %.0f s until it answers",
                self._what,
                first_line,
                retry_seconds,
            )

    def succeeded(self) -> None:
        if self._down_since is not None:
            self._log.warning(
                "%s: the database answers again after %.0f s",
                self._what,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
