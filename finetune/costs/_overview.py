"""The overview: traffic, capture rate, and what each alias cost, teacher against student.

Each model an alias served plays a role. It is the **student** when some version of the alias
named it a student target, or, never named, when it is a fine-tuned ``ft:`` model; otherwise
it is the **teacher**. Shadow captures (the teacher's answers to a sample of student traffic,
for training) are the alias's **shadow** group, whatever model answered them.

Costs are the served tokens priced by the usage price table (``model_prices`` over OpenAI's
list prices). Per alias:

- ``cost_usd``: what was billed: teacher + student + shadow.
- ``teacher_only_cost_usd``: what the same traffic would have billed had the teacher served
  all of it: the teacher's own cost plus the student-served tokens priced at the teacher's
  price. The teacher is the current version's teacher target (or the newest version's that
  had one).
- ``saving_usd = teacher_only_cost_usd - cost_usd``: the student-served part's saving, less
  the shadow traffic's cost, which exists only because a student serves.

Nothing is guessed. A model the table cannot price costs 0 and is flagged ``priced: false``;
its student requests are left out of the comparison (on both sides). When the teacher itself
is unpriced or unknown, no saving can be stated: ``teacher_only_cost_usd`` equals
``cost_usd`` and the saving is 0, flagged the same way. Cached prompt tokens are not told
apart in the captures' columns, so prompt tokens are priced at the full input rate: costs are
an upper bound where the prompt cache helped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session

from finetune.costs._usage_prices import ModelPrice, price_entry, price_of
from finetune.routing._routing import TargetSpec
from storage import RouteUsage, capture_tallies, list_alias_versions, list_aliases, session_scope

MAX_OVERVIEW_HOURS = 24 * 90
HOURLY_UP_TO_HOURS = 48
"""Windows up to this long are charted by the hour; longer ones by the day."""
UNKNOWN_MODEL = "unknown"
"""Stands for a capture that named no model at all."""


class TrafficPoint(BaseModel):
    start: datetime
    requests: int
    """Client requests; shadow requests are not client traffic."""
    errors: int
    captured: int
    approved: int
    """Captures approved for training, shadow ones included."""


class UsageGroup(BaseModel):
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class AliasUsage(BaseModel):
    alias: str
    requests: int
    """Client requests: teacher + student, shadow excluded."""
    teacher: UsageGroup
    student: UsageGroup
    shadow: UsageGroup
    cost_usd: float
    teacher_only_cost_usd: float
    saving_usd: float
    student_share: float
    """Student requests / requests; 0 without requests."""
    teacher_model: str | None
    """The model the saving is measured against."""
    priced: bool
    """False when some of its traffic, or its teacher, has no price."""


class ModelUsage(BaseModel):
    model: str
    requests: int
    """Every request it served, shadow ones included: all of them are billed."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    priced: bool


class OverviewTotals(BaseModel):
    requests: int
    errors: int
    captures: int
    """Every capture in the window, shadow ones included."""
    approved: int
    pending: int
    rejected: int
    cost_usd: float
    saving_usd: float


class Overview(BaseModel):
    since: datetime
    until: datetime
    bucket_seconds: int
    traffic: list[TrafficPoint]
    aliases: list[AliasUsage]
    models: list[ModelUsage]
    totals: OverviewTotals


@dataclass
class _Roles:
    """What an alias's versions said about its models."""

    students: set[str] = field(default_factory=set)
    teachers: set[str] = field(default_factory=set)
    teacher: str | None = None

    def role_of(self, model: str) -> str:
        if model in self.students:
            return "student"
        if model in self.teachers:
            return "teacher"
        return "student" if model.startswith("ft:") else "teacher"


def bucket_seconds_for(hours: int) -> int:
    return 3600 if hours <= HOURLY_UP_TO_HOURS else 86_400


def build_overview(
    engine: Engine,
    *,
    hours: int,
    prices: Mapping[str, ModelPrice],
    now: datetime | None = None,
) -> Overview:
    """The overview of the ``hours`` before ``now``, priced with ``prices``."""
    if not 1 <= hours <= MAX_OVERVIEW_HOURS:
        raise ValueError(f"hours must be within 1..{MAX_OVERVIEW_HOURS}")
    until = now or datetime.now(UTC)
    since = until - timedelta(hours=hours)
    with session_scope(engine) as session:
        tallies = capture_tallies(
            since, until, bucket_seconds=bucket_seconds_for(hours), session=session
        )
        current = {a.name: a.current_version for a in list_aliases(session=session)}
        named = {r.alias for r in tallies.routes if r.alias is not None} | set(current)
        roles = {name: _roles(name, current.get(name), session) for name in named}
    aliases = [_alias_usage(name, tallies.routes, roles[name], prices) for name in named]
    aliases.sort(key=lambda a: (-a.requests, a.alias))
    models = _model_usage(tallies.routes, prices)
    traffic = [TrafficPoint.model_validate(b, from_attributes=True) for b in tallies.buckets]
    totals = OverviewTotals(
        requests=sum(p.requests for p in traffic),
        errors=sum(p.errors for p in traffic),
        captures=sum(r.requests for r in tallies.routes),
        approved=tallies.review["approved"],
        pending=tallies.review["pending"],
        rejected=tallies.review["rejected"],
        cost_usd=_usd(sum(m.cost_usd for m in models)),
        saving_usd=_usd(sum(a.saving_usd for a in aliases)),
    )
    return Overview(
        since=since,
        until=until,
        bucket_seconds=tallies.bucket_seconds,
        traffic=traffic,
        aliases=aliases,
        models=models,
        totals=totals,
    )


def _roles(alias: str, current: int | None, session: Session) -> _Roles:
    """``current`` is the alias's current version; None once the alias was deleted."""
    found = _Roles()
    teachers_by_version: dict[int, str] = {}
    for version in list_alias_versions(alias, session=session):
        for target in (TargetSpec.model_validate(t) for t in version.targets):
            if target.role == "student":
                found.students.add(target.model)
            else:
                found.teachers.add(target.model)
                teachers_by_version[version.version] = target.model
    if current in teachers_by_version:
        found.teacher = teachers_by_version[current]
    elif teachers_by_version:
        found.teacher = teachers_by_version[max(teachers_by_version)]
    return found


def _usd(value: float) -> float:
    return round(value, 6)


def _alias_usage(
    alias: str, routes: Iterable[RouteUsage], roles: _Roles, prices: Mapping[str, ModelPrice]
) -> AliasUsage:
    groups = {"teacher": UsageGroup(), "student": UsageGroup(), "shadow": UsageGroup()}
    cost = teacher_equivalent = 0.0
    priced = True
    reference = roles.teacher
    teacher_priced = reference is not None and price_entry(reference, prices) is not None
    for route in routes:
        if route.alias != alias:
            continue
        model = route.model or UNKNOWN_MODEL
        name = "shadow" if route.shadow else roles.role_of(model)
        served = price_of(model, route.prompt_tokens, route.completion_tokens, prices)
        priced = priced and served is not None
        group = groups[name]
        group.requests += route.requests
        group.prompt_tokens += route.prompt_tokens
        group.completion_tokens += route.completion_tokens
        group.cost_usd += served or 0.0
        cost += served or 0.0
        if name == "student" and served is not None and reference is not None:
            on_teacher = price_of(reference, route.prompt_tokens, route.completion_tokens, prices)
            teacher_equivalent += on_teacher or 0.0
    student, teacher = groups["student"], groups["teacher"]
    if student.requests and not teacher_priced:
        priced = False
        teacher_only = cost
    else:
        teacher_only = teacher.cost_usd + teacher_equivalent
    requests = teacher.requests + student.requests
    for group in groups.values():
        group.cost_usd = _usd(group.cost_usd)
    return AliasUsage(
        alias=alias,
        requests=requests,
        teacher=teacher,
        student=student,
        shadow=groups["shadow"],
        cost_usd=_usd(cost),
        teacher_only_cost_usd=_usd(teacher_only),
        saving_usd=_usd(teacher_only - cost),
        student_share=student.requests / requests if requests else 0.0,
        teacher_model=reference,
        priced=priced,
    )


def _model_usage(
    routes: Iterable[RouteUsage], prices: Mapping[str, ModelPrice]
) -> list[ModelUsage]:
    sums: dict[str, list[int]] = {}
    for route in routes:
        into = sums.setdefault(route.model or UNKNOWN_MODEL, [0, 0, 0])
        into[0] += route.requests
        into[1] += route.prompt_tokens
        into[2] += route.completion_tokens
    models = []
    for model, (requests, prompt, completion) in sums.items():
        cost = price_of(model, prompt, completion, prices)
        models.append(
            ModelUsage(
                model=model,
                requests=requests,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=_usd(cost or 0.0),
                priced=cost is not None,
            )
        )
    models.sort(key=lambda m: (-m.cost_usd, -m.requests, m.model))
    return models
