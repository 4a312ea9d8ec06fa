"""an indexed search text on every capture

Revision ID: 0011
Revises: 0010

Search used to read the request and response JSON of row after row until a page filled: a
word in 0.05 % of a million captures took 4.9 s, and a word in none read the whole table.
``search_text`` holds what people wrote and what the model answered (``storage._search``),
written with each row; existing rows are filled here in batches.

PostgreSQL indexes it with a trigram GIN index (``pg_trgm``, a trusted extension since
PostgreSQL 13: a database owner may create it). Where the extension cannot be created, search
still works, reading rows, and a warning says so. SQLite keeps an FTS5 table with the trigram
tokenizer over the column (external content: it stores no second copy), kept current by
``insert_captures`` for new rows and by triggers for deletes and updates. A later migration
that rebuilds ``captures`` in batch mode on SQLite drops those triggers and renumbers rowids:
it must rebuild the search table (``'rebuild'``) and recreate the triggers, as this one does.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage._search import search_text

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 2000
log = logging.getLogger("stillroom.migrations")

SQLITE_SEARCH_TABLE = (
    "CREATE VIRTUAL TABLE captures_search USING fts5("
    "search_text, content='captures', content_rowid='rowid', tokenize='trigram')"
)
# No insert trigger: storage.insert_captures indexes each written batch in one statement, about
# a quarter of the cost of a trigger per row (58 against 16 us a row, measured), which the
# capture writer would otherwise pay on every capture.
SQLITE_TRIGGERS = (
    """CREATE TRIGGER captures_search_delete AFTER DELETE ON captures BEGIN
        INSERT INTO captures_search(captures_search, rowid, search_text)
        VALUES ('delete', old.rowid, old.search_text);
    END""",
    """CREATE TRIGGER captures_search_update AFTER UPDATE OF search_text ON captures BEGIN
        INSERT INTO captures_search(captures_search, rowid, search_text)
        VALUES ('delete', old.rowid, old.search_text);
        INSERT INTO captures_search(rowid, search_text) VALUES (new.rowid, new.search_text);
    END""",
)


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("captures", recreate="never") as batch:
        batch.add_column(sa.Column("search_text", sa.Text(), nullable=True))
    _backfill(bind)
    if bind.dialect.name == "postgresql":
        _index_postgresql(bind)
    elif bind.dialect.name == "sqlite":
        op.execute(SQLITE_SEARCH_TABLE)
        op.execute("INSERT INTO captures_search(captures_search) VALUES ('rebuild')")
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in ("delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS captures_search_{name}")
        op.execute("DROP TABLE IF EXISTS captures_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_captures_search_trgm")
    with op.batch_alter_table("captures", recreate="never") as batch:
        batch.drop_column("search_text")


def _backfill(bind: sa.Connection) -> None:
    captures = sa.table(
        "captures",
        sa.column("id", sa.String),
        sa.column("request", sa.JSON),
        sa.column("response", sa.JSON),
        sa.column("search_text", sa.Text),
    )
    after = ""
    while True:
        rows = bind.execute(
            sa.select(captures.c.id, captures.c.request, captures.c.response)
            .where(captures.c.id > after)
            .order_by(captures.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        bind.execute(
            captures.update()
            .where(captures.c.id == sa.bindparam("row_id"))
            .values(search_text=sa.bindparam("text")),
            [{"row_id": r.id, "text": search_text(r.request, r.response)} for r in rows],
        )
        after = rows[-1].id


def _index_postgresql(bind: sa.Connection) -> None:
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as refused:
        log.warning(
            "search stays unindexed: the pg_trgm extension could not be created (%s); a "
            "superuser can run CREATE EXTENSION pg_trgm, then CREATE INDEX "
            "ix_captures_search_trgm ON captures USING gin (search_text gin_trgm_ops)",
            refused.orig,
        )
        return
    op.execute(
        "CREATE INDEX ix_captures_search_trgm ON captures USING gin (search_text gin_trgm_ops)"
    )
