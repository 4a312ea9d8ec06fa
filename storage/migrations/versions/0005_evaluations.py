"""evaluations and their per-example results

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def _string(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", _string(40), nullable=False),
        sa.Column("dataset_id", _string(40), nullable=False),
        sa.Column("model", _string(200), nullable=False),
        sa.Column("role", _string(16), nullable=False),
        sa.Column("base_evaluation_id", _string(40), nullable=True),
        sa.Column("judge_model", _string(200), nullable=False),
        sa.Column("state", _string(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("config", _json(), nullable=False),
        sa.Column("summary", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.create_index("ix_evaluations_dataset_id", ["dataset_id", "id"], unique=False)

    op.create_table(
        "evaluation_results",
        sa.Column("evaluation_id", _string(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("capture_id", _string(40), nullable=False),
        sa.Column("prompt_hash", _string(64), nullable=False),
        sa.Column("candidate_answer", _json(), nullable=True),
        sa.Column("teacher_answer", _json(), nullable=False),
        sa.Column("rubric_score", sa.Integer(), nullable=True),
        sa.Column("rubric_reason", sa.Text(), nullable=True),
        sa.Column("pairwise_outcome", _string(8), nullable=True),
        sa.Column("pairwise_position", _string(1), nullable=True),
        sa.Column("pairwise_reason", sa.Text(), nullable=True),
        sa.Column("checks", _json(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("judge_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["evaluation_id"], ["evaluations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("evaluation_id", "position"),
    )
    with op.batch_alter_table("evaluation_results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_evaluation_results_score", ["evaluation_id", "rubric_score"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("evaluation_results", schema=None) as batch_op:
        batch_op.drop_index("ix_evaluation_results_score")
    op.drop_table("evaluation_results")
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_index("ix_evaluations_dataset_id")
    op.drop_table("evaluations")
