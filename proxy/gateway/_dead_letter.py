"""The dead-letter file: captures that could be stored neither as they were nor quarantined.

One JSON line each in the spool folder: the capture's id, why it failed, when, and the row
(``row``, retryable) or, when even that could not be written as JSON, its text (``raw``).
``stillroom spool`` lists, retries and drops them; nothing here runs in a request.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from proxy.gateway._capture import raw_text
from storage import insert_captures, session_scope

DEAD_LETTER = "dead-letter.jsonl"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    line: bytes
    capture_id: str | None
    reason: str
    at: str
    row: dict[str, Any] | None
    """The row as the writer held it; None when only its text was kept."""


def dead_letter_entry(
    capture_id: str | None, reason: str, *, row: dict[str, Any] | None, raw: str | None
) -> dict[str, Any]:
    """A dead-letter line's fields: the row when JSON can hold it, else its text."""
    entry: dict[str, Any] = {
        "id": capture_id,
        "reason": reason,
        "at": datetime.now().astimezone().isoformat(),
    }
    if row is not None:
        try:
            orjson.dumps(row)
            entry["row"] = row
        except (TypeError, orjson.JSONEncodeError):
            entry["raw"] = raw_text(row)
    else:
        entry["raw"] = raw
    return entry


def append_dead_letter(spool_dir: Path, entry: dict[str, Any]) -> None:
    try:
        line = orjson.dumps(entry)
    except (TypeError, orjson.JSONEncodeError):
        line = orjson.dumps({**{k: entry.get(k) for k in ("id", "reason", "at")}, "raw": "?"})
    with (spool_dir / DEAD_LETTER).open("ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        handle.write(line + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_dead_letters(spool_dir: Path) -> list[DeadLetter]:
    path = spool_dir / DEAD_LETTER
    if not path.exists():
        return []
    letters = []
    for line in path.read_bytes().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            entry = {"reason": "unreadable dead-letter line"}
        if not isinstance(entry, dict):
            entry = {"reason": "unreadable dead-letter line"}
        row = entry.get("row")
        letters.append(
            DeadLetter(
                line=line,
                capture_id=entry.get("id"),
                reason=str(entry.get("reason", "")),
                at=str(entry.get("at", "")),
                row=row if isinstance(row, dict) else None,
            )
        )
    return letters


def keep_dead_letters(spool_dir: Path, letters: Iterable[DeadLetter]) -> None:
    """Rewrite the file with only ``letters``; no file when none is left."""
    path = spool_dir / DEAD_LETTER
    kept = b"".join(letter.line + b"\n" for letter in letters)
    if not kept:
        path.unlink(missing_ok=True)
        return
    partial = path.with_suffix(".tmp")
    partial.write_bytes(kept)
    partial.replace(path)


def retry_dead_letter(letter: DeadLetter, engine: Engine) -> str | None:
    """Store the letter's row again: None when stored (or already there), else why not."""
    if letter.row is None:
        return "only the raw text was kept: nothing to store"
    row = dict(letter.row)
    try:
        row["created_at"] = datetime.fromisoformat(str(row["created_at"]))
        with session_scope(engine) as session:
            insert_captures([row], session=session)
    except Exception as exc:  # noqa: BLE001 - the reason is shown and the letter kept
        return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    return None
