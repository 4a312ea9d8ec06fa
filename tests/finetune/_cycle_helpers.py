"""A cycle's world for the finetune tests: a sandbox upstream, an alias whose teacher answered
approved captures, and a context wired to the sandbox's fine-tuning API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
from pydantic import SecretStr
from sqlalchemy import Engine

from finetune import (
    BackendConfig,
    CanaryPolicy,
    CycleContext,
    CyclePolicy,
    GatePolicy,
    TrainingConfig,
    advance_cycle,
    make_backend,
    run_evaluation,
    set_alias,
)
from storage import Cycle, list_evaluations, session_scope
from tests.finetune._dataset_helpers import capture, store
from tests.routing_support import config
from tests.sandbox import SandboxConfig, running_sandbox

TEACHER = "gpt-4o-2024-08-06"
BASE = "gpt-4o-mini"
ALIAS = "support"
SANDBOX_KEY = "sk-" + "sandbox"
FAST = SandboxConfig(step_seconds=0.05, epochs=2)

POLICY = CyclePolicy(
    min_new_examples=30,
    min_examples=20,
    training=TrainingConfig(base_model=BASE, suffix="support"),
    split=(0.6, 0.1, 0.3),
    canary=CanaryPolicy(canary_percent=0),
)


def teacher_captures(
    url: str, first: int, count: int, *, alias: str = ALIAS
) -> list[dict[str, Any]]:
    """``count`` approved captures of ``alias`` that the sandbox teacher really answered."""
    client = openai.OpenAI(base_url=url, api_key=SANDBOX_KEY)
    recent = datetime.now(UTC) - timedelta(minutes=10)
    rows = []
    for n in range(first, first + count):
        messages: list[dict[str, Any]] = [{"role": "user", "content": f"What is {n} squared?"}]
        answer = client.chat.completions.create(model=TEACHER, messages=messages)  # type: ignore[arg-type]
        row = capture(
            n,
            messages,
            answer.choices[0].message.model_dump(exclude_none=True),
            alias=alias,
            requested_model=alias,
            served_model=TEACHER,
            created_at=recent + timedelta(seconds=n),
        )
        row["request"]["model"] = alias
        rows.append(row)
    return rows


def make_alias(engine: Engine, alias: str = ALIAS) -> None:
    with session_scope(engine) as session:
        set_alias(
            alias, config((TEACHER, 100, "teacher")), actor="test", reason=None, session=session
        )


def context(engine: Engine, url: str, **overrides: Any) -> CycleContext:
    backend = make_backend(
        "openai",
        BackendConfig(base_url=url, api_key=SecretStr(SANDBOX_KEY), file_retry_seconds=0.05),
    )
    values: dict[str, Any] = {
        "engine": engine,
        "backend_for": lambda _name: backend,
        "gate": GatePolicy(min_examples=5),
        "canary": CanaryPolicy(),
        "judge_model": BASE,
        "file_wait_seconds": 5.0,
    }
    values.update(overrides)
    return CycleContext(**values)


@contextmanager
def sandbox_world(
    engine: Engine, sandbox: SandboxConfig = FAST, examples: int = 40
) -> Iterator[str]:
    """A running sandbox, the alias, and ``examples`` approved teacher captures."""
    with running_sandbox(sandbox) as url:
        make_alias(engine)
        store(engine, teacher_captures(url, 1, examples))
        yield url


def run_pending_evaluations(engine: Engine, url: str) -> None:
    """What the server's evaluation worker does, here in the test's own loop."""
    with session_scope(engine) as session:
        pending = [e.id for e in list_evaluations(session=session) if e.state == "pending"]

    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=url, api_key=SANDBOX_KEY)
        try:
            for evaluation_id in pending:
                await run_evaluation(engine, client, evaluation_id)
        finally:
            await client.close()

    asyncio.run(run())


def drive(
    ctx: CycleContext, url: str, cycle_id: str, *, until: str = "done", rounds: int = 400
) -> Cycle:
    """Advance the cycle as the runner would, running its evaluations, until it reaches
    ``until`` or ends."""
    cycle = advance_cycle(ctx, cycle_id)
    for _ in range(rounds):
        if cycle.state in (until, "done", "failed", "cancelled"):
            return cycle
        if cycle.state == "evaluating":
            run_pending_evaluations(ctx.engine, url)
        time.sleep(0.02)
        cycle = advance_cycle(ctx, cycle_id)
    return cycle
