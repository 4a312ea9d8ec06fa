"""curation and datasets

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "filter",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "lineage",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "split",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_datasets_name_version"),
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_name"), ["name"], unique=False)

    op.create_table(
        "capture_edits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("capture_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column(
            "message",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.ForeignKeyConstraint(["capture_id"], ["captures.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("capture_edits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_capture_edits_capture_id"), ["capture_id"], unique=False
        )

    op.create_table(
        "dataset_examples",
        sa.Column("dataset_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("capture_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("split", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("prompt_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "example",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "capture_id"),
    )
    with op.batch_alter_table("dataset_examples", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dataset_examples_split", ["dataset_id", "split", "position"], unique=False
        )

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("capture_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("completion_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("thumbs", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("comment", sqlmodel.sql.sqltypes.AutoString(length=10000), nullable=True),
        sa.Column(
            "corrected",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("api_key_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.ForeignKeyConstraint(["capture_id"], ["captures.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_capture_id"), ["capture_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_feedback_completion_id"), ["completion_id"], unique=False
        )

    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "review_status",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="pending",
            )
        )
        batch_op.add_column(
            sa.Column(
                "tags",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )
        batch_op.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("feedback", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(
            sa.Column("prompt_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column("has_tool_calls", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index("ix_captures_alias_id", ["alias", "id"], unique=False)
        batch_op.create_index("ix_captures_created_at", ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_captures_prompt_hash"), ["prompt_hash"], unique=False)
        batch_op.create_index("ix_captures_review_status_id", ["review_status", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.drop_index("ix_captures_review_status_id")
        batch_op.drop_index(batch_op.f("ix_captures_prompt_hash"))
        batch_op.drop_index("ix_captures_created_at")
        batch_op.drop_index("ix_captures_alias_id")
        batch_op.drop_column("has_tool_calls")
        batch_op.drop_column("prompt_hash")
        batch_op.drop_column("feedback")
        batch_op.drop_column("rating")
        batch_op.drop_column("tags")
        batch_op.drop_column("review_status")

    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_completion_id"))
        batch_op.drop_index(batch_op.f("ix_feedback_capture_id"))

    op.drop_table("feedback")
    with op.batch_alter_table("dataset_examples", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_examples_split")

    op.drop_table("dataset_examples")
    with op.batch_alter_table("capture_edits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_edits_capture_id"))

    op.drop_table("capture_edits")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_name"))

    op.drop_table("datasets")
