"""a partial index on captures that have feedback

Revision ID: 0016
Revises: 0015

A dataset build first asks which prompts were answered with both positive and negative
feedback (``contested_prompts``). Without an index that question read every row with a prompt
hash: on SQLite, where the feedback column sits after the request and response bodies, that
walked every body's overflow pages (2.5 s of a 380,000-capture store, a sixth of a build of
100,000 examples); on PostgreSQL it was a parallel scan of the table (0.6 s, three processes).
Few captures have feedback, so a partial index of them answers from the index alone and costs
a capture insert nothing (a capture is stored without feedback).

SQLite has no INCLUDE: the carried columns follow in the key instead.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CARRIED = "status_code, error_kind, abandoned"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        columns = f"(prompt_hash, feedback) INCLUDE ({_CARRIED})"
    elif dialect == "sqlite":
        columns = f"(prompt_hash, feedback, {_CARRIED})"
    else:  # pragma: no cover - only the two supported stores reach here
        return
    op.execute(
        f"CREATE INDEX ix_captures_feedback ON captures {columns} WHERE feedback IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_captures_feedback")
