"""The cycles admin API under /admin/cycles: start one by hand, list, inspect, cancel.

A cycle moves in the background, driven by the one replica that holds the cycle lease; these
handlers only write its record (and wake this process's runner) and read it back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from finetune import (
    CycleContext,
    CyclePolicy,
    CycleRunner,
    cancel_cycle,
    cycles,
    require_cycle,
    start_cycle,
)
from proxy._services import services
from proxy._settings import Settings
from proxy.admin._aliases import actor_of
from proxy.admin._base import admin_guard
from proxy.admin._datasets import export_hook
from proxy.admin._training import backend_from_settings
from proxy.gateway._router import student_serving
from storage import Cycle


class CycleStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(min_length=1, max_length=200)
    """The alias whose student the cycle trains; its policy is ``cycles.<alias>`` in the
    config, or the defaults."""


class CycleCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)


class CycleStep(BaseModel):
    step: str
    state: str
    """running, done, failed or cancelled."""
    started_at: datetime
    finished_at: datetime | None = None
    detail: str | None = None
    """What the step did, or what it waits for."""


class CyclePublic(BaseModel):
    id: str
    alias: str
    state: str
    trigger: str
    actor: str
    reason: str | None
    """Why it failed or was cancelled."""
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    collected_until: datetime | None
    dataset_id: str | None
    training_job_id: str | None
    student_model: str | None
    evaluation_id: str | None
    base_evaluation_id: str | None
    gate: dict[str, Any] | None
    """The gate's decision: passed, reasons, figures."""
    promotion_id: str | None
    policy: dict[str, Any]
    steps: list[CycleStep]


class CycleList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CyclePublic]


def public(cycle: Cycle) -> CyclePublic:
    return CyclePublic.model_validate(cycle, from_attributes=True)


StateQuery = Annotated[
    Literal[
        "collecting",
        "exporting",
        "training",
        "evaluating",
        "promoting",
        "done",
        "failed",
        "cancelled",
    ]
    | None,
    # ``state`` is Litestar's name for the app state: the query parameter is renamed.
    QueryParameter(name="state"),
]


class CyclesController(Controller):
    path = "/admin/cycles"
    guards = [admin_guard]
    tags = ["cycles"]

    @get("/")
    async def list_all(
        self,
        request: Request[Any, Any, Any],
        alias: Annotated[str | None, QueryParameter(min_length=1, max_length=200)] = None,
        state_filter: StateQuery = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> CycleList:
        """Newest first."""
        engine = services(request).engine
        found = await anyio.to_thread.run_sync(
            lambda: cycles(engine, alias=alias, state=state_filter, limit=limit)
        )
        return CycleList(data=[public(c) for c in found])

    @post("/", status_code=201)
    async def start(
        self, request: Request[Any, Any, Any], data: JSONBody[CycleStart]
    ) -> CyclePublic:
        """Start a cycle of the alias now: it collects, exports, trains, evaluates and, if the
        student passes the gate, promotes it."""
        found = services(request)
        policy = found.settings.cycles.get(data.alias, CyclePolicy())
        actor = actor_of(request)
        cycle = await anyio.to_thread.run_sync(
            lambda: start_cycle(found.engine, data.alias, policy, trigger="manual", actor=actor)
        )
        if found.cycles is not None:
            found.cycles.wake()
        return public(cycle)

    @get("/{cycle_id:str}")
    async def get_one(
        self, request: Request[Any, Any, Any], cycle_id: FromPath[str]
    ) -> CyclePublic:
        """One cycle with each step's times and outcome."""
        engine = services(request).engine
        return public(await anyio.to_thread.run_sync(lambda: require_cycle(engine, cycle_id)))

    @post("/{cycle_id:str}/cancel", status_code=200)
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        cycle_id: FromPath[str],
        data: JSONBody[CycleCancel | None] = None,
    ) -> CyclePublic:
        """Stop the cycle: its training job is cancelled and a canary it started rolled back."""
        found = services(request)
        actor = actor_of(request)
        reason = data.reason if data is not None else None
        cycle = await anyio.to_thread.run_sync(
            lambda: cancel_cycle(
                found.engine,
                cycle_id,
                actor=actor,
                reason=reason,
                backend_for=lambda name: backend_from_settings(found.settings, name),
            )
        )
        return public(cycle)


def cycle_runner(settings: Settings, engine: Engine) -> CycleRunner:
    """The runner of this process: it runs cycles while it holds the lease."""
    context = CycleContext(
        engine=engine,
        backend_for=lambda name: backend_from_settings(settings, name),
        gate=settings.gate,
        canary=settings.canary,
        judge_model=settings.judge_model,
        file_wait_seconds=min(settings.training_file_wait_seconds, 30.0),
        redact=export_hook(settings),
        serving=student_serving(settings),
    )
    return CycleRunner(
        context,
        settings.cycles,
        poll_seconds=settings.cycle_poll_seconds,
        lease_seconds=settings.cycle_lease_seconds,
    )
