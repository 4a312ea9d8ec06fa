"""which API a capture came through: chat completions or responses

Revision ID: 0013
Revises: 0012

Responses API exchanges (``POST /v1/responses``) are captured in the same table as chat
completions, so curation, datasets and the console keep reading one table; ``api`` tells the
two shapes of request and response apart. Every capture stored before is a chat completion.
The response id of a Responses capture lives in ``completion_id``, which is indexed already.
The table is altered in place, never rebuilt, so SQLite's search index and triggers (0011) stay.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("captures", recreate="never") as batch:
        batch.add_column(
            sa.Column("api", sa.String(length=16), nullable=False, server_default="chat")
        )


def downgrade() -> None:
    with op.batch_alter_table("captures", recreate="never") as batch:
        batch.drop_column("api")
