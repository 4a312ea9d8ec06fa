"""The curation benchmark's database: a million captures on PostgreSQL, made once and kept.

Rows are built by the proxy's own ``build_row`` from generated exchanges, then given review
state (about 60 % pending, 30 % approved, 10 % rejected), tags, ratings, end-user feedback and a
few reviewer edits. Loading is one transaction: secondary indexes are dropped, every table is
filled by ``COPY … FREEZE`` (no later vacuum rewrites the pages), and the indexes are rebuilt
from their own definitions, so the schema is exactly what the migrations made. A marker in
the table's comment lets later runs reuse the data when the schema revision and row count match.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

import storage
from bench.curation_traffic import Conversation, Traffic
from bench.postgres import ADMIN_CONNINFO
from proxy.gateway._capture import Exchange, build_row
from storage._search import search_text

DATABASE = "stillroom_bench_curation"
URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"
CONNINFO = f"host=127.0.0.1 port=5432 user=postgres dbname={DATABASE} connect_timeout=5"
DATA_VERSION = 2
"""Bump when the generator changes, so kept databases are made again."""
SEED = 20261122
SPAN_S = 30 * 86_400
WINDOW = 2000
"""Captures generated, sorted by time and written together."""
_JSON_CAPTURE_COLUMNS = frozenset(("request", "response", "error", "usage", "metadata", "tags"))
TAGS = (("good", 0.15), ("tool-use", 0.05), ("needs-fix", 0.05), ("long", 0.04))
TAGS_RARE = (("multilingual", 0.03), ("pii", 0.03), ("gold", 0.02), ("edge-case", 0.02))


@dataclass
class LoadInfo:
    reused: bool
    rows: int
    seconds: float
    """Generating and loading, or checking the kept database."""
    revision: str | None
    side_rows: dict[str, int] = field(default_factory=dict)
    """Edits and feedback rows loaded beside the captures (none counted when reused)."""


def _marker(rows: int) -> str:
    return f"stillroom bench curation data v{DATA_VERSION}: {rows} captures, seed {SEED}"


def kept_database_matches(rows: int) -> bool:
    """Whether the kept database has this generator's data at the migrations' head."""
    try:
        with psycopg.connect(CONNINFO) as connection:
            found = connection.execute(
                "SELECT (SELECT version_num FROM alembic_version LIMIT 1),"
                " obj_description('captures'::regclass, 'pg_class')"
            ).fetchone()
            if found is None or found[0] != storage.head_revision() or found[1] != _marker(rows):
                return False
            count = connection.execute("SELECT count(*) FROM captures").fetchone()
            return count is not None and int(count[0]) == rows
    except psycopg.Error:
        return False


def table_bytes() -> int:
    with psycopg.connect(CONNINFO) as connection:
        found = connection.execute("SELECT pg_total_relation_size('captures')").fetchone()
    return int(found[0]) if found else 0


def ensure(rows: int, *, regenerate: bool, say: Callable[[str], None] = print) -> LoadInfo:
    """The database with ``rows`` captures: kept if it matches, made (again) otherwise."""
    started = time.monotonic()
    if not regenerate and kept_database_matches(rows):
        say(f"  reusing {DATABASE}: {rows:,} captures at revision {storage.head_revision()}")
        return LoadInfo(True, rows, time.monotonic() - started, storage.head_revision())
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as admin:
        name = sql.Identifier(DATABASE)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    engine = storage.make_engine(URL)
    try:
        storage.upgrade(engine)
    finally:
        engine.dispose()
    say(f"  generating {rows:,} captures into {DATABASE} ...")
    side = _load(rows, say)
    with psycopg.connect(CONNINFO, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) captures, feedback, capture_edits")
    seconds = time.monotonic() - started
    say(f"  loaded and analysed in {seconds:.0f} s")
    return LoadInfo(False, rows, seconds, storage.head_revision(), side_rows=side)


def _secondary_indexes(connection: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(name, definition) of the captures indexes that back no constraint."""
    return [
        (str(name), str(definition))
        for name, definition in connection.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = 'captures'::regclass"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        )
    ]


def _load(rows: int, say: Callable[[str], None]) -> dict[str, int]:
    generator = Generator(rows, time.time())
    # COPY bypasses insert_captures, which fills the search text of every other write.
    windows = (with_search_text(batch) for batch in generator.windows())
    with psycopg.connect(CONNINFO) as connection:
        side = copy_in(connection, generator, windows, say)
        connection.execute(
            sql.SQL("COMMENT ON TABLE captures IS {}").format(sql.Literal(_marker(rows)))
        )
    return side


def copy_in(
    connection: psycopg.Connection[Any],
    generator: Generator,
    windows: Iterator[list[dict[str, Any]]],
    say: Callable[[str], None],
) -> dict[str, int]:
    """Load ``windows`` (the generator's, search text filled) and then the generator's edits
    and feedback into the migrated, empty database of ``connection``, in its transaction."""
    connection.execute("SET maintenance_work_mem = '1GB'")
    indexes = _secondary_indexes(connection)
    for name, _ in indexes:
        connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    # FREEZE needs the tables emptied in this very transaction.
    connection.execute("TRUNCATE captures, capture_edits, feedback")
    table_columns = [
        str(row[0])
        for row in connection.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'captures' ORDER BY ordinal_position"
        )
    ]
    first = next(windows)
    columns = [c for c in table_columns if c in first[0]]
    statement = sql.SQL("COPY captures ({}) FROM STDIN WITH (FREEZE)").format(
        sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    written, started = 0, time.monotonic()
    with connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for batch in itertools.chain([first], windows):
                for row in batch:
                    copy.write_row([_cell(name, row[name]) for name in columns])
                written += len(batch)
                if written % 100_000 < WINDOW:
                    rate = written / (time.monotonic() - started)
                    say(f"    {written:,} captures ({rate:,.0f}/s)")
        _copy(cursor, "capture_edits", EDIT_COLUMNS, generator.edits)
        _copy(cursor, "feedback", FEEDBACK_COLUMNS, generator.feedback)
    say(f"    rebuilding {len(indexes)} indexes ...")
    for _, definition in indexes:
        connection.execute(definition.encode())
    return {"capture_edits": len(generator.edits), "feedback": len(generator.feedback)}


def with_search_text(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in batch:
        row["search_text"] = search_text(row["request"], row["response"])
    return batch


EDIT_COLUMNS = ("capture_id", "created_at", "author", "message", "reason")
FEEDBACK_COLUMNS = (
    "capture_id",
    "completion_id",
    "created_at",
    "thumbs",
    "score",
    "comment",
    "corrected",
    "api_key_id",
)


def _copy(
    cursor: psycopg.Cursor[Any], table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FREEZE)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _cell(name: str, value: Any) -> Any:
    if name in _JSON_CAPTURE_COLUMNS and value is not None:
        return orjson.dumps(value).decode()
    return value


class Generator:
    """Captures oldest first, spread over the 30 days before ``end``, plus the edits and
    feedback rows that point at them (collected for loading after the captures)."""

    def __init__(self, rows: int, end: float) -> None:
        self.rows = rows
        self.start = end - SPAN_S
        self.rng = random.Random(SEED)
        self.traffic = Traffic(self.rng)
        self.edits: list[tuple[Any, ...]] = []
        self.feedback: list[tuple[Any, ...]] = []

    def windows(self) -> Iterator[list[dict[str, Any]]]:
        for pending in self._pending_windows():
            yield [self._row(when, conversation, index) for when, conversation, index in pending]

    def exchange_windows(self) -> Iterator[list[Exchange]]:
        """The same traffic as the proxy hands it to the sink: exchanges, no rows built."""
        for pending in self._pending_windows():
            yield [
                self.exchange(when, conversation, index) for when, conversation, index in pending
            ]

    def _pending_windows(self) -> Iterator[list[tuple[float, Conversation, int]]]:
        windows = -(-self.rows // WINDOW)
        width = SPAN_S / windows
        for index in range(windows):
            count = min(WINDOW, self.rows - index * WINDOW)
            low = self.start + index * width
            yield self._window(low, low + width, count)

    def _window(self, low: float, high: float, count: int) -> list[tuple[float, Conversation, int]]:
        rng = self.rng
        pending: list[tuple[float, Conversation, int]] = []
        while len(pending) < count:
            begun = rng.uniform(low, high)
            conversation = self.traffic.conversation(int(begun))
            # The whole conversation inside the window, so windows follow one another in time.
            begun = min(begun, high - conversation.turns[-1].offset_s - rng.uniform(1e-3, 1.0))
            for index, turn in enumerate(conversation.turns):
                pending.append((begun + turn.offset_s, conversation, index))
        pending = pending[:count]
        pending.sort(key=lambda item: item[0])
        return pending

    def exchange(self, when: float, conversation: Conversation, index: int) -> Exchange:
        rng = self.rng
        turn = conversation.turns[index]
        total_ms = rng.lognormvariate(7.0, 0.6)
        return Exchange(
            request=turn.request,
            api_key_id=conversation.api_key_id,
            upstream="default",
            served_model=None if turn.error_kind else conversation.served_model,
            alias=conversation.alias,
            capture_id=f"cap_{int(when * 1e9):016x}{rng.getrandbits(40):010x}",
            started_at=when,
            stream=conversation.stream,
            status_code=None if turn.error_kind else turn.error_status or 200,
            body=b"" if turn.error_kind else orjson.dumps(turn.response or turn.error_body),
            upstream_request_id=None if turn.error_kind else f"req_{rng.getrandbits(128):032x}",
            ttfb_ms=None if turn.error_kind else total_ms * rng.uniform(0.1, 0.4),
            total_ms=600_000.0 if turn.error_kind else total_ms,
            error_kind=turn.error_kind,
            error_message="upstream did not answer within 600 s" if turn.error_kind else None,
        )

    def _row(self, when: float, conversation: Conversation, index: int) -> dict[str, Any]:
        turn = conversation.turns[index]
        failed = turn.response is None
        row = build_row(self.exchange(when, conversation, index))
        # The model attribute is metadata_; the column is metadata.
        row["metadata"] = row.pop("metadata_")
        self._curate(row, failed, turn.single, when)
        return row

    def _curate(self, row: dict[str, Any], failed: bool, single: bool, when: float) -> None:
        rng = self.rng
        roll = rng.random()
        if failed:
            row["review_status"] = "rejected" if roll < 0.6 else "pending"
        else:
            row["review_status"] = (
                "approved" if roll < 0.306 else "rejected" if roll < 0.396 else "pending"
            )
        tags = [tag for tag, share in TAGS if rng.random() < share]
        if rng.random() < 0.1:
            tags += [tag for tag, share in TAGS_RARE if rng.random() < share * 10]
        row["tags"] = sorted(set(tags))
        if row["review_status"] != "pending" and rng.random() < 0.2:
            row["rating"] = rng.choices((1, 2, 3, 4, 5), (5, 10, 20, 35, 30))[0]
        at = datetime.fromtimestamp(when + rng.uniform(60, 3600), UTC)
        if not failed and rng.random() < 0.05:
            self._feedback(row, single, at)
        if single and not failed and row["review_status"] == "approved" and rng.random() < 0.01:
            message = {"role": "assistant", "content": "Corrected: " + rng.choice(_CORRECTIONS)}
            self.edits.append((row["id"], at, "reviewer", orjson.dumps(message).decode(), None))

    def _feedback(self, row: dict[str, Any], single: bool, at: datetime) -> None:
        rng = self.rng
        kind = rng.choices(("positive", "negative", "neutral"), (60, 30, 10))[0]
        row["feedback"] = kind
        thumbs = {"positive": 1, "negative": -1}.get(kind) if rng.random() < 0.8 else None
        score = None if thumbs is not None else {"positive": 0.9, "negative": 0.1}.get(kind, 0.5)
        corrected = None
        if kind == "negative" and single and rng.random() < 0.1:
            corrected = {"role": "assistant", "content": rng.choice(_CORRECTIONS)}
            self.edits.append(
                (row["id"], at, "feedback", orjson.dumps(corrected).decode(), "user correction")
            )
        comment = rng.choice(_COMMENTS[kind]) if rng.random() < 0.4 else None
        self.feedback.append(
            (
                row["id"],
                row["completion_id"],
                at,
                thumbs,
                score,
                comment,
                orjson.dumps(corrected).decode() if corrected else None,
                row["api_key_id"],
            )
        )


_CORRECTIONS = (
    "The refund goes back to the original card within five business days.",
    "Use the export button on the report page, then choose CSV.",
    "Your plan renews on the first of each month; you can cancel before then.",
)
_COMMENTS = {
    "positive": ("Exactly what I needed.", "Great, thanks!", "Clear answer."),
    "negative": ("Wrong order number.", "Too long.", "It did not answer the question."),
    "neutral": ("OK.", "Partly helpful.", "Fine I guess."),
}
