"""distillation cycles, and leases naming the one process that runs them

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "state IN ('collecting', 'exporting', 'training', 'evaluating', 'promoting')"


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def _string(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "cycles",
        sa.Column("id", _string(40), nullable=False),
        sa.Column("alias", _string(200), nullable=False),
        sa.Column("state", _string(16), nullable=False),
        sa.Column("trigger", _string(16), nullable=False),
        sa.Column("actor", _string(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("policy", _json(), nullable=False),
        sa.Column("collected_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dataset_id", _string(40), nullable=True),
        sa.Column("training_job_id", _string(40), nullable=True),
        sa.Column("student_model", _string(400), nullable=True),
        sa.Column("evaluation_id", _string(40), nullable=True),
        sa.Column("base_evaluation_id", _string(40), nullable=True),
        sa.Column("gate", _json(), nullable=True),
        sa.Column("promotion_id", _string(40), nullable=True),
        sa.Column("steps", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.create_index("ix_cycles_alias", ["alias", "id"], unique=False)
        batch_op.create_index("ix_cycles_state", ["state", "id"], unique=False)
        batch_op.create_index(
            "ux_cycles_one_open_per_alias",
            ["alias"],
            unique=True,
            sqlite_where=sa.text(_OPEN),
            postgresql_where=sa.text(_OPEN),
        )
    op.create_table(
        "leases",
        sa.Column("name", _string(100), nullable=False),
        sa.Column("owner", _string(200), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("leases")
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.drop_index("ux_cycles_one_open_per_alias")
        batch_op.drop_index("ix_cycles_state")
        batch_op.drop_index("ix_cycles_alias")
    op.drop_table("cycles")
