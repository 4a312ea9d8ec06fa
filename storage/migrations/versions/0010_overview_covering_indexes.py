"""covering indexes for the overview's figures

Revision ID: 0010
Revises: 0009

The overview sums a time window of captures by alias and model. Read through the table, a
month of a million captures took 3-11 s on PostgreSQL and 12 s on SQLite (2.3 GB of rows,
mostly request and response bodies); read from these indexes alone, under a second on
PostgreSQL and 5 s on SQLite. ``ix_captures_created_at`` keeps created_at as its leading key,
so every range query that used it still does. The shadow captures get a partial index of their
own, because their mark lives in the ``tags`` JSON, which an index entry cannot hold safely (a
long tag list would not fit).

SQLite has no INCLUDE: the carried columns follow created_at in the key instead.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CARRIED = (
    "alias, served_model, requested_model, status_code, error_kind, review_status,"
    " prompt_tokens, completion_tokens"
)
# storage._overview.SHADOW_PREDICATE states the same conditions: keep them equal, or the
# overview's shadow read stops using the index.
_SHADOW = {
    "postgresql": "tags @> '[\"shadow\"]'::jsonb",
    "sqlite": "tags LIKE '%\"shadow\"%'",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        columns = f"(created_at) INCLUDE ({_CARRIED})"
    elif dialect == "sqlite":
        columns = f"(created_at, {_CARRIED})"
    else:  # pragma: no cover - only the two supported stores reach here
        return
    op.execute("DROP INDEX IF EXISTS ix_captures_created_at")
    op.execute(f"CREATE INDEX ix_captures_created_at ON captures {columns}")
    op.execute(f"CREATE INDEX ix_captures_shadow ON captures {columns} WHERE {_SHADOW[dialect]}")


def downgrade() -> None:
    if op.get_bind().dialect.name not in _SHADOW:  # pragma: no cover
        return
    op.execute("DROP INDEX IF EXISTS ix_captures_shadow")
    op.execute("DROP INDEX IF EXISTS ix_captures_created_at")
    op.execute("CREATE INDEX ix_captures_created_at ON captures (created_at)")
