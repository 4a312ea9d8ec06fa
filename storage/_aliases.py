"""Data access for aliases, their versions and their history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from storage._models import utcnow
from storage._routing_models import Alias, AliasEvent, AliasVersion


def get_alias(name: str, *, session: Session, for_update: bool = False) -> Alias | None:
    """The alias row; ``for_update`` locks it on PostgreSQL, so changes to one alias queue."""
    statement = select(Alias).where(Alias.name == name)
    if for_update:
        statement = statement.with_for_update()
    return session.exec(statement).first()


def list_aliases(*, session: Session) -> list[Alias]:
    return list(session.exec(select(Alias).order_by(col(Alias.name))).all())


def get_alias_version(name: str, version: int, *, session: Session) -> AliasVersion | None:
    return session.exec(
        select(AliasVersion).where(AliasVersion.alias == name, AliasVersion.version == version)
    ).first()


def list_alias_versions(name: str, *, session: Session) -> list[AliasVersion]:
    return list(
        session.exec(
            select(AliasVersion)
            .where(AliasVersion.alias == name)
            .order_by(col(AliasVersion.version))
        ).all()
    )


def next_alias_version(name: str, *, session: Session) -> int:
    """One past the highest version ever written, so a re-created alias never reuses one."""
    highest = session.exec(
        select(func.max(AliasVersion.version)).where(AliasVersion.alias == name)
    ).one()
    return (highest or 0) + 1


def insert_alias_version(
    name: str,
    version: int,
    *,
    targets: list[dict[str, Any]],
    shadow_rate: float,
    created_by: str,
    reason: str | None,
    session: Session,
) -> AliasVersion:
    row = AliasVersion(
        alias=name,
        version=version,
        targets=targets,
        shadow_rate=shadow_rate,
        created_by=created_by,
        reason=reason,
    )
    session.add(row)
    session.flush()
    return row


def point_alias(name: str, version: int, *, session: Session) -> Alias:
    """Make ``version`` current (creating the alias row if needed); remember the one before."""
    alias = get_alias(name, session=session)
    if alias is None:
        alias = Alias(name=name, current_version=version)
    else:
        alias.previous_version = alias.current_version
        alias.current_version = version
        alias.updated_at = utcnow()
    session.add(alias)
    session.flush()
    return alias


def delete_alias_row(name: str, *, session: Session) -> None:
    """Remove the alias; its versions and events stay, as its record."""
    session.exec(delete(Alias).where(col(Alias.name) == name))
    session.flush()


def add_alias_event(
    name: str,
    action: str,
    *,
    from_version: int | None,
    to_version: int | None,
    actor: str,
    reason: str | None,
    session: Session,
) -> AliasEvent:
    event = AliasEvent(
        alias=name,
        action=action,
        from_version=from_version,
        to_version=to_version,
        actor=actor,
        reason=reason,
    )
    session.add(event)
    session.flush()
    return event


def list_alias_events(name: str, *, session: Session, limit: int = 100) -> list[AliasEvent]:
    """The newest first."""
    return list(
        session.exec(
            select(AliasEvent)
            .where(AliasEvent.alias == name)
            .order_by(col(AliasEvent.id).desc())
            .limit(limit)
        ).all()
    )


def route_generation(*, session: Session) -> tuple[int, int]:
    """(count, highest id) of the alias events: it changes on every committed route change.

    Events are never deleted, so the count grows with each commit, even one whose id is lower
    than an id already seen (ids are handed out before commit, in any order).
    """
    count, highest = session.exec(
        select(func.count(col(AliasEvent.id)), func.max(AliasEvent.id))
    ).one()
    return int(count or 0), int(highest or 0)


def current_alias_versions(*, session: Session) -> list[tuple[Alias, AliasVersion]]:
    """Every alias with its current version, in one query: what the route table is built from."""
    rows = session.exec(
        select(Alias, AliasVersion)
        .join(
            AliasVersion,
            (col(AliasVersion.alias) == col(Alias.name))
            & (col(AliasVersion.version) == col(Alias.current_version)),
        )
        .order_by(col(Alias.name))
    ).all()
    return [(alias, version) for alias, version in rows]
