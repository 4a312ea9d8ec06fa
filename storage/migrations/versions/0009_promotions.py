"""promotions: canary then full, rolled back or aborted, one open canary per alias

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "stage = 'canary'"


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def _string(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "promotions",
        sa.Column("id", _string(40), nullable=False),
        sa.Column("alias", _string(200), nullable=False),
        sa.Column("model", _string(200), nullable=False),
        sa.Column("upstream", _string(100), nullable=False),
        sa.Column("stage", _string(16), nullable=False),
        sa.Column("canary_percent", sa.Float(), nullable=False),
        sa.Column("policy", _json(), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("canary_version", sa.Integer(), nullable=True),
        sa.Column("full_version", sa.Integer(), nullable=True),
        sa.Column("actor", _string(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cycle_id", _string(40), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", _string(200), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("signals", _json(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.create_index("ix_promotions_alias", ["alias", "id"], unique=False)
        batch_op.create_index(
            "ux_promotions_one_canary_per_alias",
            ["alias"],
            unique=True,
            sqlite_where=sa.text(_OPEN),
            postgresql_where=sa.text(_OPEN),
        )


def downgrade() -> None:
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.drop_index("ux_promotions_one_canary_per_alias")
        batch_op.drop_index("ix_promotions_alias")
    op.drop_table("promotions")
