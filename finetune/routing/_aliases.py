"""The alias service: versions, history, rollback, and the route table the proxy loads.

Every change writes an immutable version (rollback excepted: it moves the pointer back) and an
event naming who and why, in the caller's transaction. Changes to one alias are serialised by
a row lock on PostgreSQL; on SQLite the database itself admits one writer at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from finetune.routing._routing import (
    AliasConfig,
    AliasConflict,
    AliasNotFound,
    InvalidAlias,
    Route,
    TargetSpec,
    build_route,
    check_alias_name,
    check_config,
)
from storage import (
    Alias,
    AliasEvent,
    AliasVersion,
    add_alias_event,
    current_alias_versions,
    delete_alias_row,
    get_alias,
    get_alias_version,
    insert_alias_version,
    list_alias_events,
    list_alias_versions,
    list_aliases,
    next_alias_version,
    point_alias,
)

ChangeAction = Literal["update", "promote"]


class AliasVersionView(BaseModel):
    version: int
    targets: list[TargetSpec]
    shadow_rate: float
    created_at: datetime
    created_by: str
    reason: str | None


class AliasView(BaseModel):
    """An alias with its current version."""

    name: str
    version: int
    previous_version: int | None
    targets: list[TargetSpec]
    shadow_rate: float
    created_at: datetime
    updated_at: datetime
    changed_by: str
    """Who wrote the current version."""
    reason: str | None


class AliasEventView(BaseModel):
    id: int
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str | None
    created_at: datetime


def _view(alias: Alias, version: AliasVersion) -> AliasView:
    return AliasView(
        name=alias.name,
        version=alias.current_version,
        previous_version=alias.previous_version,
        targets=[TargetSpec.model_validate(t) for t in version.targets],
        shadow_rate=version.shadow_rate,
        created_at=alias.created_at,
        updated_at=alias.updated_at,
        changed_by=version.created_by,
        reason=version.reason,
    )


def _version_view(version: AliasVersion) -> AliasVersionView:
    return AliasVersionView(
        version=version.version,
        targets=[TargetSpec.model_validate(t) for t in version.targets],
        shadow_rate=version.shadow_rate,
        created_at=version.created_at,
        created_by=version.created_by,
        reason=version.reason,
    )


def _event_view(event: AliasEvent) -> AliasEventView:
    assert event.id is not None
    return AliasEventView.model_validate(event, from_attributes=True)


def _existing(name: str, session: Session, *, lock: bool = False) -> Alias:
    alias = get_alias(name, session=session, for_update=lock)
    if alias is None:
        raise AliasNotFound(f"No alias {name!r}.", param="name", code="alias_not_found")
    return alias


def _current(alias: Alias, session: Session) -> AliasVersion:
    version = get_alias_version(alias.name, alias.current_version, session=session)
    assert version is not None, "an alias always points at a version it wrote"
    return version


def set_alias(
    name: str,
    config: AliasConfig,
    *,
    actor: str,
    reason: str | None,
    session: Session,
    action: ChangeAction = "update",
    create_only: bool = False,
    known_upstreams: Iterable[str] | None = None,
) -> AliasView:
    """Write a new version and make it current; creates the alias when it does not exist.

    ``action`` names the change in the history (``promote`` for the promotion gate);
    ``create_only`` refuses an existing alias with AliasConflict."""
    check_alias_name(name)
    check_config(config, known_upstreams)
    alias = get_alias(name, session=session, for_update=True)
    if alias is not None and create_only:
        raise AliasConflict(f"Alias {name!r} exists already.", param="name", code="alias_exists")
    before = alias.current_version if alias is not None else None
    version = next_alias_version(name, session=session)
    try:
        row = insert_alias_version(
            name,
            version,
            targets=[t.model_dump() for t in config.targets],
            shadow_rate=config.shadow_rate,
            created_by=actor,
            reason=reason,
            session=session,
        )
        alias = point_alias(name, version, session=session)
    except IntegrityError:
        raise AliasConflict(
            f"Alias {name!r} was changed at the same time; try again.",
            param="name",
            code="concurrent_change",
        ) from None
    add_alias_event(
        name,
        "create" if before is None else action,
        from_version=before,
        to_version=version,
        actor=actor,
        reason=reason,
        session=session,
    )
    return _view(alias, row)


def rollback_alias(
    name: str,
    *,
    actor: str,
    reason: str | None,
    session: Session,
    to_version: int | None = None,
) -> AliasView:
    """Make the version that was current before the last change current again (or
    ``to_version``). Rolling back twice returns to where it started."""
    alias = _existing(name, session, lock=True)
    target = to_version if to_version is not None else alias.previous_version
    if target is None:
        raise InvalidAlias(
            f"Alias {name!r} has no previous version to roll back to.",
            param="to_version",
            code="nothing_to_roll_back",
        )
    version = get_alias_version(name, target, session=session)
    if version is None:
        raise AliasNotFound(
            f"Alias {name!r} has no version {target}.", param="to_version", code="version_not_found"
        )
    if target == alias.current_version:
        raise InvalidAlias(
            f"Version {target} of {name!r} is already current.",
            param="to_version",
            code="already_current",
        )
    before = alias.current_version
    alias = point_alias(name, target, session=session)
    add_alias_event(
        name,
        "rollback",
        from_version=before,
        to_version=target,
        actor=actor,
        reason=reason,
        session=session,
    )
    return _view(alias, version)


def delete_alias(name: str, *, actor: str, reason: str | None, session: Session) -> None:
    """Remove the alias: its name passes through as a plain model again. History stays."""
    alias = _existing(name, session, lock=True)
    before = alias.current_version
    delete_alias_row(name, session=session)
    add_alias_event(
        name,
        "delete",
        from_version=before,
        to_version=None,
        actor=actor,
        reason=reason,
        session=session,
    )


def get_alias_view(name: str, *, session: Session) -> AliasView:
    alias = _existing(name, session)
    return _view(alias, _current(alias, session))


def list_alias_views(*, session: Session) -> list[AliasView]:
    return [_view(alias, version) for alias, version in current_alias_versions(session=session)]


def alias_versions(name: str, *, session: Session) -> list[AliasVersionView]:
    rows = list_alias_versions(name, session=session)
    if not rows:
        raise AliasNotFound(f"No alias {name!r}.", param="name", code="alias_not_found")
    return [_version_view(row) for row in rows]


def alias_history(name: str, *, session: Session, limit: int = 100) -> list[AliasEventView]:
    """Newest first; a deleted alias keeps its history."""
    events = list_alias_events(name, session=session, limit=limit)
    if not events:
        raise AliasNotFound(f"No alias {name!r}.", param="name", code="alias_not_found")
    return [_event_view(event) for event in events]


def load_routes(*, session: Session) -> dict[str, Route]:
    """The route table: every alias's current version, ready for the hot path."""
    return {
        alias.name: build_route(
            alias.name,
            version.version,
            version.targets,
            version.shadow_rate,
            created=int(alias.created_at.timestamp()),
        )
        for alias, version in current_alias_versions(session=session)
    }


def alias_names(*, session: Session) -> list[str]:
    return [alias.name for alias in list_aliases(session=session)]
