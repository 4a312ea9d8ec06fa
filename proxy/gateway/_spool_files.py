"""The sink's files in the spool folder: what is in a spool line, which files wait, and the
overflow file.

A spool line holds a built row, or, in the overflow file, a raw exchange
(``{"exchange": {...}}``, its body base64-encoded). A spool file whose lock can be taken
belongs to no live process: the next writer that sees it replays it.

The queue in memory is bounded (``capture_queue_limit``). A capture offered past the bound is
neither dropped nor waited for: the request path appends it, as one JSON line, to this
process's overflow file (``spool-<host>-<pid>.overflow.jsonl``), a write to the page cache
with no fsync, and goes on. The exchange is kept raw, as the queue would have held it: building
its row (decoding, rebuilding a stream, rules, redaction) is the writer's work, and the reason
the writer fell behind.

The writer takes the file's lines back, a batch at a time, whenever it has caught up with the
queue, and stores them like any other capture; once it has read the whole file it empties it.
Appends and the emptying take one lock, held for a write or a truncate, never for a database
call. The file is locked for the process's life, like the spool file: if the process dies, the
next one replays it as an orphaned spool, whose reader knows exchange lines from row lines.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

from proxy.gateway._capture import Exchange

SPOOL_FILES = "spool-*.jsonl"

_EXCHANGE = "exchange"
"""The key of a spool line that holds a raw exchange instead of a built row."""


def _bytes_as_text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} cannot be spooled")


def encode_exchange(exchange: Exchange) -> bytes:
    """One spool line holding ``exchange`` (its body base64-encoded)."""
    return orjson.dumps({_EXCHANGE: exchange}, default=_bytes_as_text) + b"\n"


def decode_line(line: bytes) -> dict[str, Any] | Exchange:
    """A spool line as the row or the exchange it holds; raises ValueError (or KeyError,
    TypeError) for a damaged one."""
    record = orjson.loads(line)
    if not isinstance(record, dict):
        raise ValueError("a spool line must be a JSON object")
    fields = record.get(_EXCHANGE)
    if fields is None:
        return record
    fields["body"] = base64.b64decode(fields["body"])
    return Exchange(**fields)


def rows_of(
    lines: list[bytes],
    build: Callable[[Exchange], dict[str, Any] | None],
    damaged: Callable[[bytes, Exception], None],
) -> list[dict[str, Any]]:
    """The rows of spool lines: a built row as it was (its timestamp parsed again), a raw
    exchange through ``build``; ``damaged`` gets each line that is neither."""
    rows = []
    for line in lines:
        try:
            found = decode_line(line)
            if isinstance(found, Exchange):
                row = build(found)
            else:
                row = found
                row["created_at"] = datetime.fromisoformat(row["created_at"])
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            damaged(line, exc)
            continue
        if row is not None:
            rows.append(row)
    return rows


_READ_CHUNK = 1 << 20


def _read_from(fd: int, offset: int) -> bytes:
    """Everything in the file past ``offset``."""
    parts = []
    while chunk := os.pread(fd, _READ_CHUNK, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def spool_bytes(spool_dir: Path) -> int:
    total = 0
    for path in spool_dir.glob(SPOOL_FILES):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def append_synced(path: Path, data: bytes) -> None:
    """Append to a spool file of this process's end, durably."""
    with path.open("ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def orphan(path: Path) -> Iterator[bytes | None]:
    """The lines of a spool file no live process holds; None when one does (or it is gone).
    The file stays locked, so no other writer replays it meanwhile."""
    try:
        handle = path.open("rb+")
    except FileNotFoundError:
        yield None
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        if replaced_or_gone(path, handle):
            # Another worker replayed and removed it while this one waited to open it.
            yield None
            return
        yield handle.read()


def replaced_or_gone(path: Path, handle: IO[bytes]) -> bool:
    """Whether ``path`` no longer names the file ``handle`` holds."""
    try:
        return os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return True


class Overflow:
    """This process's overflow file: appended to by ``offer``, read back by the writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._read_to = 0
        """Bytes of the file already handed to the writer."""
        self._synced = True

    def open(self) -> None:
        self._fd = self._open_file()
        self._read_to = 0

    def _open_file(self) -> int:
        # Read back through the same descriptor: what it holds stays readable even if the
        # path is removed.
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        # Held for the process's life: a lock that can be taken marks an orphaned spool.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd

    def gone(self) -> bool:
        """Whether the path no longer names the open file (removed, its folder with it)."""
        fd = self._fd
        if fd is None:
            return False
        try:
            return os.stat(self.path).st_ino != os.fstat(fd).st_ino
        except FileNotFoundError:
            return True

    def reopen(self) -> None:
        """Open the file at its path again, the lines not yet taken carried over from the
        removed one (whose lines would otherwise reach no one once this process ends)."""
        with self._lock:
            old = self._fd
            unread = b""
            if old is not None:
                unread = _read_from(old, self._read_to)
                os.close(old)
            fd = self._open_file()
            written = 0
            while written < len(unread):
                written += os.write(fd, unread[written:])
            self._fd, self._read_to, self._synced = fd, 0, False

    def offer(self, exchange: Exchange) -> bool:
        """Append ``exchange``; False when it cannot be written (the caller keeps it)."""
        try:
            line = encode_exchange(exchange)
        except (TypeError, orjson.JSONEncodeError):
            return False
        with self._lock:
            if self._fd is None:
                return False
            written = 0
            try:
                while written < len(line):
                    written += os.write(self._fd, line[written:])
            except OSError:
                if written:
                    # Half a line (a full disk): end it, so the next line stays whole; the
                    # capture itself stays with the caller.
                    with contextlib.suppress(OSError):
                        os.write(self._fd, b"\n")
                return False
            self._synced = False
        return True

    def waiting(self) -> bool:
        """Whether lines wait that the writer has not taken yet."""
        fd = self._fd
        return fd is not None and os.fstat(fd).st_size > self._read_to

    def take(self, limit: int) -> list[bytes]:
        """Up to ``limit`` whole lines past those already taken, in order. Call ``taken``
        once they are stored (or spooled elsewhere)."""
        fd = self._fd
        lines: list[bytes] = []
        if fd is None:
            return lines
        offset, pending = self._read_to, b""
        while len(lines) < limit:
            chunk = os.pread(fd, _READ_CHUNK, offset)
            if not chunk:
                break
            offset += len(chunk)
            *whole, pending = (pending + chunk).split(b"\n")
            lines.extend(line + b"\n" for line in whole[: limit - len(lines)])
        # A last line without its end is still being written: it waits.
        return lines

    def taken(self, lines: list[bytes]) -> None:
        """Those lines are stored; when nothing follows them, empty the file."""
        self._read_to += sum(len(line) for line in lines)
        with self._lock:
            if self._fd is not None and os.fstat(self._fd).st_size == self._read_to:
                os.ftruncate(self._fd, 0)
                self._read_to = 0

    def sync(self) -> None:
        """Make what was appended durable (the writer calls this; the request path never)."""
        with self._lock:
            if self._fd is None or self._synced:
                return
            self._synced = True
            fd = self._fd
        os.fsync(fd)

    def close(self) -> None:
        """Sync and close; an empty file is removed, one with lines left is the next
        process's to replay."""
        self.sync()
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        empty = os.fstat(fd).st_size == 0
        os.close(fd)
        if empty:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
