"""GIN indexes for tag and metadata filters (PostgreSQL only)

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite has no GIN; its tag filter uses json_each and its metadata filter json_extract.
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE INDEX ix_captures_tags_gin ON captures USING gin (tags jsonb_path_ops)")
    op.execute(
        "CREATE INDEX ix_captures_metadata_gin ON captures USING gin (metadata jsonb_path_ops)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_captures_metadata_gin")
    op.execute("DROP INDEX IF EXISTS ix_captures_tags_gin")
