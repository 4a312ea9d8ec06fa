"""Alias tables: versions stay as written, the pointer moves, events count every change."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from storage import (
    add_alias_event,
    current_alias_versions,
    delete_alias_row,
    get_alias,
    insert_alias_version,
    list_alias_events,
    next_alias_version,
    point_alias,
    route_generation,
    session_scope,
)
from tests.routing_support import empty_alias_tables


@pytest.fixture(autouse=True)
def _no_aliases(engine: Engine) -> None:
    empty_alias_tables(engine)


TEACHER = [{"upstream": "default", "model": "gpt-4o", "weight": 1.0, "role": "teacher"}]


def _write(engine: Engine, name: str, version: int) -> None:
    with session_scope(engine) as session:
        insert_alias_version(
            name,
            version,
            targets=TEACHER,
            shadow_rate=0.0,
            created_by="t",
            reason=None,
            session=session,
        )
        point_alias(name, version, session=session)
        add_alias_event(
            name,
            "update",
            from_version=None,
            to_version=version,
            actor="t",
            reason=None,
            session=session,
        )


def test_pointing_at_a_new_version_remembers_the_previous(engine: Engine) -> None:
    _write(engine, "bot", 1)
    _write(engine, "bot", 2)
    with session_scope(engine) as session:
        alias = get_alias("bot", session=session)
        assert alias is not None
        assert (alias.current_version, alias.previous_version) == (2, 1)
        assert next_alias_version("bot", session=session) == 3


def test_a_version_number_cannot_be_written_twice(engine: Engine) -> None:
    _write(engine, "bot", 1)
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        insert_alias_version(
            "bot",
            1,
            targets=TEACHER,
            shadow_rate=0.0,
            created_by="t",
            reason=None,
            session=session,
        )


def test_current_versions_join_each_alias_to_its_pointer(engine: Engine) -> None:
    _write(engine, "a", 1)
    _write(engine, "a", 2)
    _write(engine, "b", 1)
    with session_scope(engine) as session:
        rows = current_alias_versions(session=session)
    assert [(alias.name, version.version) for alias, version in rows] == [("a", 2), ("b", 1)]


def test_generation_changes_with_every_event_and_survives_deletion(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert route_generation(session=session) == (0, 0)
    _write(engine, "bot", 1)
    with session_scope(engine) as session:
        first = route_generation(session=session)
        delete_alias_row("bot", session=session)
        add_alias_event(
            "bot",
            "delete",
            from_version=1,
            to_version=None,
            actor="t",
            reason="gone",
            session=session,
        )
    with session_scope(engine) as session:
        second = route_generation(session=session)
        assert get_alias("bot", session=session) is None
        assert current_alias_versions(session=session) == []
        events = list_alias_events("bot", session=session)
        # A re-created alias continues the numbering, so no version is ever reused.
        assert next_alias_version("bot", session=session) == 2
    assert first[0] == 1 and second[0] == 2 and second[1] > first[1]
    assert [e.action for e in events] == ["delete", "update"]
