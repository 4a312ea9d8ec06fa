"""Keeps training jobs tracked while the server runs, starting with those a restart left open.

A daemon thread (the SDK blocks) calls ``resume_open_jobs`` at once and then every
``poll_seconds``: interrupted launches are finished, running jobs synced. Syncing is
idempotent, so several replicas tracking the same jobs only repeat each other's reads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from finetune.datasets._export import Redact
from finetune.training._jobs import resume_open_jobs
from finetune.training._protocol import TrainingBackend
from storage import OutageLog

log = logging.getLogger("stillroom.training")


class JobTracker:
    def __init__(
        self,
        engine: Engine,
        backend_for: Callable[[str], TrainingBackend],
        *,
        poll_seconds: float,
        file_wait_seconds: float,
        redact: Redact | None = None,
    ) -> None:
        self.engine = engine
        self.backend_for = backend_for
        self.poll_seconds = poll_seconds
        self.file_wait_seconds = file_wait_seconds
        self.redact = redact
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self._outage = OutageLog(log, "training job tracker")
        """Completed passes over the open jobs (tests wait on it)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="training-tracker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                resumed = resume_open_jobs(
                    self.engine,
                    self.backend_for,
                    file_wait_seconds=self.file_wait_seconds,
                    redact=self.redact,
                )
                if resumed:
                    log.info("tracked %d open training jobs", len(resumed))
            except Exception as exc:  # noqa: BLE001 - one bad round, not the tracker
                self._outage.failed(exc, self.poll_seconds)
            else:
                self._outage.succeeded()
            self.rounds += 1
            self._stop.wait(self.poll_seconds)

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
