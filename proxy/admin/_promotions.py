"""The promotion admin API: promote a student onto an alias (canary first), follow the canary,
make it full or abort it by hand.

The canary's automatic decisions (full after its time or sample, rollback on a regression)
are made by the cycle runner; these endpoints are the person's side of the same promotion.
Every change records who made it (``X-Stillroom-Actor``, else ``admin``) and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from pydantic import BaseModel, ConfigDict, Field

from finetune import (
    abort_promotion,
    get_promotion,
    list_promotions,
    promote_now,
    start_promotion,
)
from proxy._services import Services, services
from proxy.admin._aliases import actor_of
from proxy.admin._base import admin_guard
from storage import Promotion


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    """The student, e.g. the ``ft:`` model a training job produced."""
    upstream: str = Field(default="default", min_length=1, max_length=100)
    canary_percent: float | None = Field(default=None, ge=0, lt=100)
    """The student's first share of the traffic [default: the ``canary`` setting]; 0 goes
    straight to full."""
    full: bool = False
    """Skip the canary: the student serves everything at once."""
    reason: str | None = Field(default=None, max_length=2000)


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)


class PromotionPublic(BaseModel):
    id: str
    alias: str
    model: str
    upstream: str
    stage: str
    """canary, full, rolled_back or aborted."""
    canary_percent: float
    from_version: int
    """The alias version before the promotion: what a rollback returns to."""
    canary_version: int | None
    full_version: int | None
    started_at: datetime
    decided_at: datetime | None
    actor: str
    """Who started it."""
    reason: str | None
    """Why it was started."""
    decided_by: str | None
    """Who ended the canary: ``stillroom`` for the automatic decision."""
    outcome: str | None
    """How it ended, with the figures that decided it."""
    cycle_id: str | None
    policy: dict[str, Any]
    """The canary policy it runs under."""
    signals: dict[str, Any] | None
    """student and teacher: requests, errors, negative_feedback, error_rate, negative_rate."""
    checked_at: datetime | None


class PromotionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PromotionPublic]


def _public(promotion: Promotion) -> PromotionPublic:
    return PromotionPublic.model_validate(promotion, from_attributes=True)


async def _changed(found: Services, promotion: Promotion) -> PromotionPublic:
    """This process routes by the change at once; the others pick it up on their next poll."""
    await anyio.to_thread.run_sync(found.routes.refresh)
    return _public(promotion)


class PromotionsController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["admin", "promotions"]

    @post("/aliases/{name:str}/promote", status_code=201)
    async def promote(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[PromoteRequest]
    ) -> PromotionPublic:
        """Promote a student onto the alias: a canary share first, then full when the online
        signals hold up (or at once with ``full``)."""
        found = services(request)
        policy = found.settings.canary
        if data.full:
            policy = policy.model_copy(update={"canary_percent": 0.0})
        elif data.canary_percent is not None:
            policy = policy.model_copy(update={"canary_percent": data.canary_percent})
        actor = actor_of(request)

        def run() -> Promotion:
            return start_promotion(
                found.engine,
                name,
                data.model,
                upstream=data.upstream,
                policy=policy,
                actor=actor,
                reason=data.reason,
                known_upstreams=found.upstream_names,
                serving=found.serving,
            )

        return await _changed(found, await anyio.to_thread.run_sync(run))

    @get("/promotions")
    async def list_promotions(
        self,
        request: Request[Any, Any, Any],
        alias: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> PromotionList:
        """Newest first."""
        engine = services(request).engine
        rows = await anyio.to_thread.run_sync(
            lambda: list_promotions(engine, alias=alias, limit=limit)
        )
        return PromotionList(data=[_public(row) for row in rows])

    @get("/promotions/{promotion_id:str}")
    async def get_promotion(
        self, request: Request[Any, Any, Any], promotion_id: FromPath[str]
    ) -> PromotionPublic:
        engine = services(request).engine
        return _public(await anyio.to_thread.run_sync(get_promotion, engine, promotion_id))

    @post("/promotions/{promotion_id:str}/full", status_code=200)
    async def full(
        self,
        request: Request[Any, Any, Any],
        promotion_id: FromPath[str],
        data: JSONBody[DecisionRequest | None] = None,
    ) -> PromotionPublic:
        """Make the canary full now, whatever its signals say."""
        found = services(request)
        actor, reason = actor_of(request), data.reason if data else None
        promotion = await anyio.to_thread.run_sync(
            lambda: promote_now(
                found.engine, promotion_id, actor=actor, reason=reason, serving=found.serving
            )
        )
        return await _changed(found, promotion)

    @post("/promotions/{promotion_id:str}/abort", status_code=200)
    async def abort(
        self,
        request: Request[Any, Any, Any],
        promotion_id: FromPath[str],
        data: JSONBody[DecisionRequest | None] = None,
    ) -> PromotionPublic:
        """Stop the canary now: the alias goes back to the version before it."""
        found = services(request)
        actor, reason = actor_of(request), data.reason if data else None
        promotion = await anyio.to_thread.run_sync(
            lambda: abort_promotion(found.engine, promotion_id, actor=actor, reason=reason)
        )
        return await _changed(found, promotion)
