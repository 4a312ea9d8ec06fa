"""How the engine talks to PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlmodel import col

from storage import Capture, CaptureFilter, filter_clauses, make_engine, session_scope


def test_postgresql_plans_every_filter_for_its_own_values(pg_database_url: str) -> None:
    # A server-side prepared statement may switch to a generic plan after five runs, blind to
    # how many rows a tag or a metadata value selects; none is ever made.
    engine = make_engine(pg_database_url, pool_size=1)
    capture_filter = CaptureFilter(status=["approved"], tags=["gold"], metadata={"team": "x"})
    try:
        with session_scope(engine) as session:
            clauses = filter_clauses(capture_filter, "postgresql")
            statement = select(col(Capture.id)).where(*clauses).order_by(col(Capture.id)).limit(51)
            for _ in range(8):
                assert session.execute(statement).all() == []
            prepared = session.execute(text("SELECT statement FROM pg_prepared_statements"))
            assert prepared.scalars().all() == []
    finally:
        engine.dispose()
