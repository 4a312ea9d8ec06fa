"""training jobs, events and checkpoints

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "training_jobs",
        sa.Column("id", _text(40), nullable=False),
        sa.Column("idempotency_key", _text(200), nullable=False),
        sa.Column("backend", _text(100), nullable=False),
        sa.Column("backend_job_id", _text(200), nullable=True),
        sa.Column("dataset_id", _text(40), nullable=False),
        sa.Column("cycle_id", _text(40), nullable=True),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("training_file_id", _text(200), nullable=True),
        sa.Column("validation_file_id", _text(200), nullable=True),
        sa.Column("state", _text(32), nullable=False),
        sa.Column("fine_tuned_model", _text(400), nullable=True),
        sa.Column("trained_tokens", sa.Integer(), nullable=True),
        sa.Column("error", _json(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_training_jobs_state", ["state", "id"], unique=False)
        batch_op.create_index("ix_training_jobs_dataset", ["dataset_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_training_jobs_backend_job_id"), ["backend_job_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_training_jobs_cycle_id"), ["cycle_id"], unique=False)

    op.create_table(
        "training_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", _text(40), nullable=False),
        sa.Column("backend_event_id", _text(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", _text(16), nullable=False),
        sa.Column("message", _text(4000), nullable=False),
        sa.Column("type", _text(32), nullable=True),
        sa.Column("data", _json(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["training_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "backend_event_id", name="uq_training_events_backend_id"),
    )
    with op.batch_alter_table("training_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_events_job_id"), ["job_id"], unique=False)

    op.create_table(
        "training_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", _text(40), nullable=False),
        sa.Column("backend_checkpoint_id", _text(200), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("model", _text(400), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["training_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "job_id", "backend_checkpoint_id", name="uq_training_checkpoints_backend_id"
        ),
    )
    with op.batch_alter_table("training_checkpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_training_checkpoints_job_id"), ["job_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("training_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_checkpoints_job_id"))
    op.drop_table("training_checkpoints")
    with op.batch_alter_table("training_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_events_job_id"))
    op.drop_table("training_events")
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_jobs_cycle_id"))
        batch_op.drop_index(batch_op.f("ix_training_jobs_backend_job_id"))
        batch_op.drop_index("ix_training_jobs_dataset")
        batch_op.drop_index("ix_training_jobs_state")
    op.drop_table("training_jobs")
