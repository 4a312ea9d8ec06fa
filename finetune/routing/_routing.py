"""Routing as data: an alias's weighted targets, checked, and the pure pick of one per request.

A ``Route`` is what the proxy holds in memory for one alias. Picking is a hash or a random
number against cumulative weights: no I/O, so the hot path pays microseconds for it.

Sticky assignment: with a ``user`` (or ``safety_identifier``), the point in [0, 1) is a stable
hash of alias and user, so that user keeps landing on the same target for as long as the
weights stay the same; a canary that grows from 10 % to 50 % keeps its first 10 % of users.
"""

from __future__ import annotations

import hashlib
import random
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

Role = Literal["teacher", "student"]
DEFAULT_UPSTREAM = "default"
ALIAS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$")


class AliasError(Exception):
    """An alias change was refused; nothing was changed.

    AliasError
    ├── AliasNotFound     no such alias (or version)
    ├── AliasConflict     it exists already, or a concurrent change won
    └── InvalidAlias      the name, targets or weights do not make sense
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class AliasNotFound(AliasError):
    pass


class AliasConflict(AliasError):
    pass


class InvalidAlias(AliasError):
    pass


class TargetSpec(BaseModel):
    """One (upstream, model) pair of an alias, with its share of the traffic."""

    upstream: str = Field(default=DEFAULT_UPSTREAM, min_length=1, max_length=100)
    """A configured upstream's name; ``default`` is STILLROOM_UPSTREAM_BASE_URL."""
    model: str = Field(min_length=1, max_length=200)
    weight: float = Field(ge=0, le=1_000_000)
    """Relative share; weights need not add up to 1 or 100. A weight-0 teacher serves only
    fallbacks and shadow traffic."""
    role: Role = "teacher"


class AliasConfig(BaseModel):
    """What a new version of an alias says."""

    targets: list[TargetSpec] = Field(min_length=1, max_length=50)
    shadow_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of requests served by a student that are also sent to the teacher, in the
    background, for capture."""


@dataclass(frozen=True, slots=True)
class Target:
    upstream: str
    model: str
    weight: float
    role: Role


@dataclass(frozen=True, slots=True)
class Route:
    """One alias as the proxy routes it."""

    alias: str
    version: int
    targets: tuple[Target, ...]
    """Only the targets that take traffic (weight > 0)."""
    bounds: tuple[float, ...]
    """Cumulative weights scaled to end at 1: target i owns [bounds[i-1], bounds[i])."""
    teacher: Target | None
    shadow_rate: float
    created: int = 0
    """Unix time the alias was created: ``created`` in ``/v1/models``."""

    def pick(self, user: str | None, draw: Callable[[], float] = random.random) -> Target:
        point = sticky_point(self.alias, user) if user else draw()
        index = bisect_right(self.bounds, point)
        # A point of exactly 1.0 cannot come from either source; float rounding of the last
        # bound can, so the last target takes whatever lies past it.
        return self.targets[min(index, len(self.targets) - 1)]


def sticky_point(alias: str, user: str) -> float:
    """A stable point in [0, 1) for this user on this alias, the same in every process."""
    digest = hashlib.blake2b(f"{alias}\x00{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def check_alias_name(name: str) -> str:
    if not ALIAS_NAME.fullmatch(name):
        raise InvalidAlias(
            f"Alias name {name!r} is not valid: use 1-200 letters, digits and . _ : @ + -, "
            "starting with a letter or digit.",
            param="name",
            code="invalid_alias_name",
        )
    return name


def check_config(config: AliasConfig, known_upstreams: Iterable[str] | None = None) -> None:
    """Refuse a configuration that cannot route: raises InvalidAlias naming the problem."""
    targets = config.targets
    if sum(t.weight for t in targets) <= 0:
        raise InvalidAlias(
            "At least one target needs a weight above 0.", param="targets", code="no_weight"
        )
    teachers = [t for t in targets if t.role == "teacher"]
    if len(teachers) > 1:
        raise InvalidAlias(
            "An alias has at most one teacher: fallback and shadow traffic go to it.",
            param="targets",
            code="several_teachers",
        )
    pairs = [(t.upstream, t.model) for t in targets]
    if len(set(pairs)) != len(pairs):
        raise InvalidAlias(
            "Each (upstream, model) target may appear only once.",
            param="targets",
            code="duplicate_target",
        )
    if config.shadow_rate > 0 and not teachers:
        raise InvalidAlias(
            "shadow_rate needs a teacher target to send shadow traffic to.",
            param="shadow_rate",
            code="no_teacher",
        )
    if known_upstreams is not None:
        known = set(known_upstreams)
        unknown = sorted({t.upstream for t in targets} - known)
        if unknown:
            raise InvalidAlias(
                f"Unknown upstream {unknown[0]!r}; configured: {', '.join(sorted(known))}.",
                param="targets",
                code="unknown_upstream",
            )


def build_route(
    alias: str, version: int, targets: Sequence[Any], shadow_rate: float, created: int = 0
) -> Route:
    """The in-memory route of one alias version; ``targets`` as stored (dicts) or TargetSpec."""
    specs = [t if isinstance(t, TargetSpec) else TargetSpec.model_validate(t) for t in targets]
    every = [Target(s.upstream, s.model, s.weight, s.role) for s in specs]
    serving = tuple(t for t in every if t.weight > 0)
    total = sum(t.weight for t in serving)
    running = 0.0
    bounds: list[float] = []
    for target in serving:
        running += target.weight
        bounds.append(running / total)
    teacher = next((t for t in every if t.role == "teacher"), None)
    return Route(
        alias=alias,
        version=version,
        targets=serving,
        bounds=tuple(bounds),
        teacher=teacher,
        shadow_rate=shadow_rate,
        created=created,
    )
