"""The capture sink: never blocks a request, writes in batches, spools when the database can't.

One writer thread per process owns the database writes and the spool file. The event loop
only puts an ``Exchange`` on a queue. A batch the database refuses is appended to this
process's spool file; the writer replays spool files (its own, and those of processes that
died) once the database answers again. Inserts skip ids already stored, so a replay that is
interrupted and repeated never duplicates a capture.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from finetune import Redactor, RuleConfig
from proxy._metrics import Metrics
from proxy.gateway._capture import Exchange, apply_rules, build_row
from storage import insert_captures, session_scope

log = logging.getLogger("stillroom.sink")
_STOP = object()


class CaptureSink:
    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        spool_dir: Path,
        batch_size: int = 500,
        flush_seconds: float = 0.2,
        retry_seconds: float = 2.0,
        rules: Sequence[RuleConfig] = (),
        redactor: Redactor | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._queue: queue.SimpleQueue[Exchange | object] = queue.SimpleQueue()
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._retry_seconds = retry_seconds
        self._rules = tuple(rules)
        self._redactor = redactor
        self._spool_dir = spool_dir
        self._spool_path = spool_dir / f"spool-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._spool: IO[bytes] | None = None
        self._db_down_since: float | None = None
        self._last_attempt = 0.0
        self._next_replay = 0.0
        self._inflight: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        metrics.watch_sink(self._queue.qsize, self.spool_bytes)

    def start(self) -> None:
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        self._spool = self._spool_path.open("ab+")
        # Held for the process's life: a lock that can be taken marks an orphaned spool.
        fcntl.flock(self._spool.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def submit(self, exchange: Exchange) -> None:
        self._queue.put(exchange)
        self._metrics.captures_submitted.inc()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued (to the database or the spool), then stop."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._spool_what_the_writer_holds(timeout)
            return
        self._thread = None
        if self._spool is not None:
            empty = self._spool_path.stat().st_size == 0
            self._spool.close()
            self._spool = None
            if empty:
                self._spool_path.unlink(missing_ok=True)

    def _spool_what_the_writer_holds(self, waited: float) -> None:
        """The writer is stuck on the database: spool its batch and the queue to a file of
        their own, which the next process replays (ids make a double write harmless)."""
        rows = list(self._inflight)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Exchange):
                rows.append(self._row(item))
        path = self._spool_dir / f"spool-{socket.gethostname()}-{os.getpid()}-final.jsonl"
        with path.open("ab") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            handle.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
            handle.flush()
            os.fsync(handle.fileno())
        self._metrics.captures_spooled.inc(len(rows))
        log.error(
            "capture writer still busy after %.1f s: spooled %d captures to %s",
            waited,
            len(rows),
            path.name,
        )

    def pending(self) -> int:
        return self._queue.qsize()

    def spool_bytes(self) -> int:
        total = 0
        for path in self._spool_dir.glob("spool-*.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    # -- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        self._replay_due(force=True)
        stopping = False
        while not stopping:
            batch, stopping = self._take_batch()
            if batch:
                self._inflight = [self._row(exchange) for exchange in batch]
                self._store(self._inflight)
                self._inflight = []
            self._replay_due(force=False)

    def _take_batch(self) -> tuple[list[Exchange], bool]:
        batch: list[Exchange] = []
        try:
            item = self._queue.get(timeout=self._flush_seconds)
        except queue.Empty:
            return batch, False
        deadline = time.monotonic() + self._flush_seconds
        while True:
            if item is _STOP:
                return batch, True
            assert isinstance(item, Exchange)
            batch.append(item)
            if len(batch) >= self._batch_size:
                return batch, False
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                return batch, False

    def _row(self, exchange: Exchange) -> dict[str, Any]:
        try:
            return build_row(exchange, rules=self._rules, redactor=self._redactor)
        except Exception as exc:
            log.exception("capture %s could not be parsed; stored raw", exchange.capture_id)
            exchange.body, body = b"", exchange.body
            row = build_row(exchange, redactor=self._redactor)
            error = {
                "message": f"capture could not be parsed: {exc}",
                "type": "capture_error",
                "body": body[:65536].decode("utf-8", "replace"),
            }
            row["error"] = error if self._redactor is None else self._redactor.redact_value(error)
            return apply_rules(row, self._rules)

    def _store(self, rows: list[dict[str, Any]]) -> None:
        db_may_answer = self._db_down_since is None or self._retry_is_due()
        if not (db_may_answer and self._write(rows)):
            self._append_to_spool(rows)

    def _retry_is_due(self) -> bool:
        return time.monotonic() - self._last_attempt >= self._retry_seconds

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        self._last_attempt = time.monotonic()
        try:
            with session_scope(self._engine) as session:
                insert_captures(rows, session=session)
        except SQLAlchemyError as exc:
            self._metrics.capture_write_failures.inc()
            if self._db_down_since is None:
                self._db_down_since = time.monotonic()
                log.warning("database refused %d captures, spooling: %s", len(rows), _short(exc))
            return False
        if self._db_down_since is not None:
            log.warning("database is back after %.1f s", time.monotonic() - self._db_down_since)
            self._db_down_since = None
        self._metrics.captures_written.inc(len(rows))
        return True

    def _append_to_spool(self, rows: list[dict[str, Any]]) -> None:
        assert self._spool is not None
        self._spool.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        self._spool.flush()
        os.fsync(self._spool.fileno())
        self._metrics.captures_spooled.inc(len(rows))

    def _replay_due(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now < self._next_replay:
            return
        self._next_replay = now + self._retry_seconds
        assert self._spool is not None
        if self._spool_path.stat().st_size > 0 and not self._replay_own():
            return
        for path in sorted(self._spool_dir.glob("spool-*.jsonl")):
            if path != self._spool_path and not self._replay_orphan(path):
                return

    def _replay_own(self) -> bool:
        assert self._spool is not None
        self._spool.seek(0)
        if not self._replay_lines(self._spool.read(), self._spool_path):
            return False
        self._spool.truncate(0)
        self._spool.seek(0)
        return True

    def _replay_orphan(self, path: Path) -> bool:
        try:
            handle = path.open("rb+")
        except FileNotFoundError:
            return True
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # a live process owns it and will replay it
            if not self._replay_lines(handle.read(), path):
                return False
            path.unlink(missing_ok=True)
        return True

    def _replay_lines(self, data: bytes, path: Path) -> bool:
        rows = []
        for line in data.splitlines():
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                # Only a write cut by a crash leaves a partial line, and then only the last.
                log.error("skipping a damaged line in %s", path.name)
                continue
            row["created_at"] = datetime.fromisoformat(row["created_at"])
            rows.append(row)
        for start in range(0, len(rows), self._batch_size):
            if not self._write(rows[start : start + self._batch_size]):
                return False
        if rows:
            self._metrics.captures_replayed.inc(len(rows))
            log.warning("replayed %d spooled captures from %s", len(rows), path.name)
        return True


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200]
