"""The capture sink: never blocks a request, writes in batches, spools when the database can't.

One writer thread per process owns the database writes and the spool file. The event loop
only puts an ``Exchange`` on a queue, which is bounded: past ``queue_limit`` captures it
appends the exchange to an overflow file instead (``_spool_files``), which the writer takes
back once it has caught up. A batch the database cannot take (it is down, stalled, or not yet
migrated) is appended to this process's spool file; the writer replays spool files (its own,
and those of processes that died) once the database answers again. Inserts skip ids already
stored, so a replay that is interrupted and repeated never duplicates a capture.

A database that answers but refuses a row is another matter: the batch is retried row by row
and the refused row is stored as a raw quarantined record instead (``quarantine_row``), so it
never holds up the captures behind it. A capture that cannot even be built is quarantined the
same way; what even its raw record cannot be stored as goes to the dead-letter file, which
``stillroom spool`` lists, retries and drops. The writer itself is supervised: whatever
escapes a round is logged, what it held is spooled, and the loop goes on.
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
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Engine

from finetune import Redactor, RuleConfig
from proxy._metrics import Metrics
from proxy.gateway._capture import (
    Exchange,
    build_row,
    quarantine_exchange,
    quarantine_row,
    raw_text,
)
from proxy.gateway._dead_letter import append_dead_letter, dead_letter_entry
from proxy.gateway._spool_files import (
    Overflow,
    append_synced,
    orphan,
    replaced_or_gone,
    rows_of,
    spool_bytes,
)
from storage import database_unreachable, insert_captures, session_scope

log = logging.getLogger("stillroom.sink")
_STOP = object()
_NAPS_PER_FLUSH = 10
"""How often, within one flush interval, the writer looks for more of a batch."""


class CaptureSink:
    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        spool_dir: Path,
        batch_size: int = 500,
        queue_limit: int = 5000,
        flush_seconds: float = 0.2,
        retry_seconds: float = 2.0,
        rules: Sequence[RuleConfig] = (),
        redactor: Redactor | None = None,
        schema_ready: threading.Event | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._queue: queue.SimpleQueue[Exchange | object] = queue.SimpleQueue()
        self._batch_size = batch_size
        self._queue_limit = queue_limit
        self._flush_seconds = flush_seconds
        self._retry_seconds = retry_seconds
        self._rules = tuple(rules)
        self._redactor = redactor
        self._schema_ready = schema_ready
        self._spool_dir = spool_dir
        self._spool_path = spool_dir / f"spool-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._spool: IO[bytes] | None = None
        self._overflow = Overflow(self._spool_path.with_suffix(".overflow.jsonl"))
        self._db_down_since: float | None = None
        self._last_attempt = 0.0
        self._next_replay = 0.0
        self._inflight: list[dict[str, Any]] = []
        self._stop_seen = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._supervisor = threading.Lock()
        metrics.watch_sink(self._queue.qsize, self.spool_bytes)

    def start(self) -> None:
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        self._spool = self._spool_path.open("ab+")
        # Held for the process's life: a lock that can be taken marks an orphaned spool.
        fcntl.flock(self._spool.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._overflow.open()
        self._start_writer()

    def _start_writer(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="capture-writer", daemon=True)
        self._thread.start()

    def submit(self, exchange: Exchange) -> None:
        # Past the bound, to the overflow file; if even that fails, memory: never dropped.
        if self._queue.qsize() < self._queue_limit or not self._overflow.offer(exchange):
            self._queue.put(exchange)
        else:
            self._metrics.captures_overflowed.inc()
        self._metrics.captures_submitted.inc()
        thread = self._thread
        if thread is not None and not self._closing and not thread.is_alive():
            self._restart_writer()

    def _restart_writer(self) -> None:
        """The supervisor of last resort: a writer thread that is gone is started again."""
        with self._supervisor:
            if self._closing or self._thread is None or self._thread.is_alive():
                return
            self._metrics.writer_restarts.inc()
            log.error("the capture writer was not running; starting it again")
            self._start_writer()

    def writer_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def database_state(self) -> str | None:
        """None while captures reach the database; else why they are spooled."""
        if self._schema_ready is not None and not self._schema_ready.is_set():
            return "waiting for the database to be reachable and migrated"
        if self._db_down_since is not None:
            return f"database refusing writes for {time.monotonic() - self._db_down_since:.0f} s"
        return None

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued (to the database or the spool), then stop."""
        if self._thread is None:
            return
        self._closing = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive() or self._queue.qsize() > 0:
            self._spool_what_the_writer_holds(timeout)
            return
        self._thread = None
        self._overflow.close()
        if self._spool is not None:
            empty = os.fstat(self._spool.fileno()).st_size == 0
            self._spool.close()
            self._spool = None
            if empty:
                self._spool_path.unlink(missing_ok=True)

    def _spool_what_the_writer_holds(self, waited: float) -> None:
        """The writer is stuck on the database: spool its batch and the queue to a file of
        their own, which the next process replays (ids make a double write harmless)."""
        held: list[Any] = []
        with contextlib.suppress(queue.Empty):
            while True:
                held.append(self._queue.get_nowait())
        built = (self._row(item) for item in held if isinstance(item, Exchange))
        rows = [*self._inflight, *(row for row in built if row is not None)]
        self._overflow.close()
        path = self._spool_dir / f"spool-{socket.gethostname()}-{os.getpid()}-final.jsonl"
        append_synced(path, b"".join(self._line(row) for row in rows))
        self._metrics.captures_spooled.inc(len(rows))
        log.error("writer busy for %.1f s: %d captures to %s", waited, len(rows), path.name)

    def pending(self) -> int:
        return self._queue.qsize()

    def spool_bytes(self) -> int:
        return spool_bytes(self._spool_dir)

    # -- writer thread -------------------------------------------------------------------

    def _supervise(self) -> None:
        while True:
            try:
                self._run()
                return
            except Exception:
                self._metrics.writer_restarts.inc()
                log.exception("capture writer round failed; spooling what it held, going on")
                rows, self._inflight = self._inflight, []
                with contextlib.suppress(Exception):
                    self._append_to_spool(rows)
                time.sleep(self._flush_seconds)

    def _run(self) -> None:
        self._replay_due(force=True)
        while not self._stop_seen:
            self._keep_spool_files()
            batch, self._stop_seen = self._take_batch()
            if batch:
                self._inflight = [row for row in map(self._row, batch) if row is not None]
                self._store(self._inflight)
                self._inflight = []
            self._overflow.sync()
            self._take_back_overflow()
            self._replay_due(force=False)
        # Stopping: what overflowed goes to the database now if it can, else stays spooled.
        while self._overflow_due():
            self._take_back_overflow()

    def _take_back_overflow(self) -> None:
        """Store a batch of the overflow file, when the queue is short and the database up."""
        if self._queue.qsize() >= self._batch_size or not self._overflow_due():
            return
        lines = self._overflow.take(self._batch_size)
        self._inflight = self._rows_of(lines, self._overflow.path)
        self._store(self._inflight)
        self._inflight = []
        self._overflow.taken(lines)

    def _overflow_due(self) -> bool:
        return self._overflow.waiting() and self._db_may_answer()

    def _take_batch(self) -> tuple[list[Exchange], bool]:
        """Up to a batch of exchanges, waiting at most ``flush_seconds`` for it to fill.

        The writer blocks on the queue only for a batch's first exchange; then it drains what
        has arrived and naps between drains. Blocking for each exchange would wake this thread,
        and hand it the interpreter, once for every request the event loop answers."""
        batch: list[Exchange] = []
        try:
            # Overflowed captures the database can take now: no pause for more.
            if self._overflow_due():
                item = self._queue.get_nowait()
            else:
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
            item = self._next_queued(deadline)
            if item is None:
                return batch, False

    def _next_queued(self, deadline: float) -> object | None:
        """The next queued item, napping until ``deadline`` for one; None if none came."""
        while True:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(remaining, self._flush_seconds / _NAPS_PER_FLUSH))

    def _row(self, exchange: Exchange) -> dict[str, Any] | None:
        """The capture's row; a capture that cannot be built becomes a quarantined record."""
        try:
            return build_row(exchange, rules=self._rules, redactor=self._redactor)
        except Exception as exc:  # noqa: BLE001 - any failure quarantines this one capture
            reason = f"could not be built: {type(exc).__name__}: {_short(exc)}"
        log.error("capture %s quarantined: %s", exchange.capture_id, reason)
        self._metrics.captures_quarantined.inc()
        try:
            return quarantine_exchange(exchange, reason, redactor=self._redactor)
        except Exception as exc:  # noqa: BLE001 - the last resort is the dead-letter file
            self._dead_letter(exc, raw=f"{exchange.capture_id}: {raw_text(exchange.request)}")
            return None

    def _store(self, rows: list[dict[str, Any]]) -> None:
        if not (self._db_may_answer() and self._write(rows)):
            self._append_to_spool(rows)

    def _db_may_answer(self) -> bool:
        if self._schema_ready is not None and not self._schema_ready.is_set():
            return False
        return self._db_down_since is None or self._retry_is_due()

    def _retry_is_due(self) -> bool:
        return time.monotonic() - self._last_attempt >= self._retry_seconds

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        """Store ``rows``; False when the database is down (nothing refused is lost: a row the
        database refuses is stored quarantined instead, or dead-lettered)."""
        self._last_attempt = time.monotonic()
        try:
            self._insert(rows)
        except Exception as exc:  # noqa: BLE001 - down or refused, each is handled below
            if database_unreachable(exc):
                self._mark_down(exc, len(rows))
                return False
            if len(rows) > 1:
                # One bad row must not cost the batch: find it, row by row.
                return all(self._write([row]) for row in rows)
            return self._quarantine_refused(rows[0], exc)
        self._mark_up()
        self._metrics.captures_written.inc(len(rows))
        return True

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with session_scope(self._engine) as session:
            insert_captures(rows, session=session)

    def _quarantine_refused(self, row: dict[str, Any], refusal: Exception) -> bool:
        reason = f"refused by the database: {_short(refusal)}"
        log.error("capture %s quarantined: %s", row.get("id"), reason)
        self._metrics.captures_quarantined.inc()
        try:
            self._insert([quarantine_row(row, reason)])
        except Exception as exc:  # noqa: BLE001 - down: spool it all; refused: dead-letter
            if database_unreachable(exc):
                self._mark_down(exc, 1)
                return False
            self._dead_letter(exc, row=row)
            return True
        self._mark_up()
        return True

    def _mark_down(self, exc: BaseException, count: int) -> None:
        self._metrics.capture_write_failures.inc()
        if self._db_down_since is None:
            self._db_down_since = time.monotonic()
            log.warning("database cannot take %d captures, spooling: %s", count, _short(exc))

    def _mark_up(self) -> None:
        if self._db_down_since is not None:
            log.warning("database is back after %.1f s", time.monotonic() - self._db_down_since)
            self._db_down_since = None

    def _dead_letter(
        self, exc: BaseException, *, row: dict[str, Any] | None = None, raw: str | None = None
    ) -> None:
        """Keep what could not be stored anywhere else: ``row`` (retryable) or ``raw`` text."""
        capture_id = row.get("id") if row is not None else None
        reason = f"{type(exc).__name__}: {_short(exc)}"
        append_dead_letter(self._spool_dir, dead_letter_entry(capture_id, reason, row=row, raw=raw))
        self._metrics.captures_dead_lettered.inc()
        log.error("capture %s dead-lettered: %s", capture_id, reason)

    def _line(self, row: dict[str, Any]) -> bytes:
        try:
            return orjson.dumps(row) + b"\n"
        except (TypeError, orjson.JSONEncodeError) as exc:
            self._metrics.captures_quarantined.inc()
            return orjson.dumps(quarantine_row(row, f"cannot be spooled: {exc}")) + b"\n"

    def _keep_spool_files(self) -> None:
        """Open the spool and overflow files again if they were removed (their folder with
        them) under this process: what is written to a removed file is lost when it ends."""
        assert self._spool is not None
        spool_gone = replaced_or_gone(self._spool_path, self._spool)
        if not spool_gone and not self._overflow.gone():
            return
        log.error("the spool files were removed under this process; writing them again")
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        if spool_gone:
            old, self._spool = self._spool, self._spool_path.open("ab+")
            fcntl.flock(self._spool.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            old.seek(0)
            held = old.read()
            old.close()
            if held:
                self._spool.write(held)
                self._spool.flush()
                os.fsync(self._spool.fileno())
        if self._overflow.gone():
            self._overflow.reopen()

    def _append_to_spool(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self._keep_spool_files()
        assert self._spool is not None
        self._spool.write(b"".join(self._line(row) for row in rows))
        self._spool.flush()
        os.fsync(self._spool.fileno())
        self._metrics.captures_spooled.inc(len(rows))

    def _replay_due(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now < self._next_replay:
            return
        self._next_replay = now + self._retry_seconds
        if self._schema_ready is not None and not self._schema_ready.is_set():
            return
        assert self._spool is not None
        if os.fstat(self._spool.fileno()).st_size > 0 and not self._replay_own():
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
        with orphan(path) as data:
            if data is None:
                return True  # gone, or a live process owns it and will replay it
            if not self._replay_lines(data, path):
                return False
            path.unlink(missing_ok=True)
        return True

    def _rows_of(self, lines: list[bytes], path: Path) -> list[dict[str, Any]]:
        def damaged(line: bytes, exc: Exception) -> None:
            # A write cut by a crash leaves a partial last line; keep it for a person.
            log.error("a damaged line in %s goes to the dead-letter file", path.name)
            self._dead_letter(exc, raw=line[:65536].decode("utf-8", "replace"))

        return rows_of(lines, self._row, damaged)

    def _replay_lines(self, data: bytes, path: Path) -> bool:
        rows = self._rows_of(data.splitlines(), path)
        for start in range(0, len(rows), self._batch_size):
            if not self._write(rows[start : start + self._batch_size]):
                return False
        if rows:
            self._metrics.captures_replayed.inc(len(rows))
            log.warning("replayed %d spooled captures from %s", len(rows), path.name)
        return True


def _short(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0][:200] if lines else type(exc).__name__
