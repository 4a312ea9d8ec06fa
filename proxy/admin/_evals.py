"""The evaluations admin API under /admin/evals: start (a candidate, optionally with its base
model), list, read with summary and comparison, and results worst first.

Starting answers 202 at once with the evaluations recorded as pending; the evaluation worker
of some replica (``finetune.EvaluationWorker``, nudged here) runs them through the configured
upstream (never through this proxy, so nothing of it is captured), resuming them after a crash.
Their state says how far they got and how they ended. The finetune services' refusals become
OpenAI-shaped errors in ``proxy._errors``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
import openai
from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from finetune import (
    EvaluationLease,
    EvaluationWorker,
    RunOptions,
    StudentServing,
    create_evaluations,
    evaluation_report,
    evaluation_results,
    list_evaluations,
)
from proxy._errors import InvalidRequest
from proxy._services import services
from proxy._settings import Settings
from proxy.admin._base import admin_guard
from storage import Evaluation, EvaluationResult


def upstream_client(settings: Settings) -> openai.AsyncOpenAI:
    """The configured upstream, directly: evaluation traffic must not become training data."""
    key = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
    return openai.AsyncOpenAI(
        base_url=settings.upstream_base_url,
        # Without a key the upstream answers 401, and the evaluation fails saying so.
        api_key=key or "no-upstream-key-configured",
        timeout=settings.upstream_timeout_seconds,
        max_retries=0,
    )


class EvaluationStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=40)
    model: str = Field(min_length=1, max_length=200)
    """The candidate, e.g. the ``ft:`` model a training job produced."""
    base_model: str | None = Field(default=None, min_length=1, max_length=200)
    """Evaluated as well, so the gain of fine-tuning shows."""
    judge_model: str | None = Field(default=None, min_length=1, max_length=200)
    """[default: the ``judge_model`` setting]"""
    concurrency: int | None = Field(default=None, ge=1, le=256)
    """[default: the ``eval_concurrency`` setting]"""
    max_retries: int = Field(default=4, ge=0, le=20)
    seed: int = 0
    """Fixes the order the pairwise judge sees the answers in."""
    upstream: str = Field(default="default", min_length=1, max_length=100)
    """Where ``model`` and ``base_model`` are asked (a self-hosted student's upstream, which
    loads it first); the judge is always asked on ``default``."""


class EvaluationPublic(BaseModel):
    id: str
    dataset_id: str
    model: str
    role: str
    base_evaluation_id: str | None
    judge_model: str
    state: str
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    config: dict[str, Any]
    progress: int
    """Examples scored so far."""
    total: int | None
    """Examples to score; known once a worker has started on it."""
    attempts: int
    """How many times a worker took it up (more than one: it was resumed after a crash)."""
    summary: dict[str, Any]
    """examples, errors, judge_errors, rubric (scored, mean, histogram), pairwise (compared,
    wins, ties, losses, win_rate), checks (name -> passed, applied, rate), similarity_mean,
    latency_ms, prompt_tokens, completion_tokens."""


class EvaluationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EvaluationPublic]


class ResultPublic(BaseModel):
    position: int
    capture_id: str
    prompt_hash: str
    candidate_answer: dict[str, Any] | None
    teacher_answer: dict[str, Any]
    rubric_score: int | None
    rubric_reason: str | None
    pairwise_outcome: str | None
    pairwise_position: str | None
    pairwise_reason: str | None
    checks: dict[str, Any]
    latency_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None
    judge_error: str | None


class EvaluationDetail(EvaluationPublic):
    comparison: dict[str, Any] | None
    """Against the base model (figure -> candidate, base, delta), once both finished."""
    worst: list[ResultPublic]


class ResultPage(BaseModel):
    object: Literal["list"] = "list"
    total: int
    data: list[ResultPublic]
    """Worst first: failed answers, then the lowest rubric score, losses before ties."""


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands times back without their zone; they were written in UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def public(evaluation: Evaluation) -> EvaluationPublic:
    found = EvaluationPublic.model_validate(evaluation, from_attributes=True)
    found.created_at = _utc(found.created_at) or found.created_at
    found.started_at, found.finished_at = _utc(found.started_at), _utc(found.finished_at)
    return found


def result_public(result: EvaluationResult) -> ResultPublic:
    return ResultPublic.model_validate(result, from_attributes=True)


def named_upstream_client(settings: Settings, name: str) -> openai.AsyncOpenAI | None:
    """A named upstream (a self-hosted student's), directly, with its own key if it has one."""
    config = settings.upstreams.get(name)
    if config is None:
        return None
    key = config.api_key or settings.upstream_api_key
    return openai.AsyncOpenAI(
        base_url=config.base_url,
        api_key=key.get_secret_value() if key else "no-upstream-key-configured",
        timeout=settings.upstream_timeout_seconds,
        max_retries=0,
    )


def evaluation_worker(
    settings: Settings, engine: Engine, *, serving: StudentServing | None = None
) -> EvaluationWorker:
    """The worker that runs this replica's share of the evaluations; ``create_app`` starts it
    in the lifespan."""
    return EvaluationWorker(
        engine,
        lambda: upstream_client(settings),
        poll_seconds=settings.eval_poll_seconds,
        lease=EvaluationLease(seconds=settings.eval_lease_seconds),
        upstream_client=lambda name: named_upstream_client(settings, name),
        upstream_model=serving.upstream_model if serving is not None else None,
    )


def _nudge_worker(request: Request[Any, Any, Any]) -> None:
    worker: EvaluationWorker | None = request.app.state.get("evaluation_worker")
    if worker is not None:
        worker.nudge()


PageLimit = Annotated[int, QueryParameter(ge=1, le=500)]
PageOffset = Annotated[int, QueryParameter(ge=0)]
DatasetQuery = Annotated[str | None, QueryParameter(min_length=1, max_length=40)]


class EvaluationsController(Controller):
    path = "/admin/evals"
    guards = [admin_guard]
    tags = ["evaluations"]

    @post("/", status_code=202)
    async def start(
        self, request: Request[Any, Any, Any], data: JSONBody[EvaluationStart]
    ) -> EvaluationList:
        """Start evaluating ``model`` (and ``base_model``) on the dataset's test split."""
        found = services(request)
        settings = found.settings
        options = RunOptions(
            concurrency=data.concurrency or settings.eval_concurrency,
            max_retries=data.max_retries,
            seed=data.seed,
        )

        if data.upstream not in found.upstream_names:
            raise InvalidRequest(
                f"Unknown upstream {data.upstream!r}; configured: "
                f"{', '.join(found.upstream_names)}.",
                param="upstream",
                code="unknown_upstream",
            )
        config = options.as_config()
        if data.upstream != "default":
            config["upstream"] = data.upstream

        def create() -> list[Evaluation]:
            if found.serving is not None:
                found.serving.prepare(data.upstream, data.model)
            return create_evaluations(
                found.engine,
                data.dataset_id,
                data.model,
                base_model=data.base_model,
                judge_model=data.judge_model or settings.judge_model,
                config=config,
            )

        created = await anyio.to_thread.run_sync(create)
        _nudge_worker(request)
        return EvaluationList(data=[public(e) for e in created])

    @get("/")
    async def list_all(
        self, request: Request[Any, Any, Any], dataset_id: DatasetQuery = None
    ) -> EvaluationList:
        engine = services(request).engine
        found = await anyio.to_thread.run_sync(
            lambda: list_evaluations(engine, dataset_id=dataset_id)
        )
        return EvaluationList(data=[public(e) for e in found])

    @get("/{evaluation_id:str}")
    async def get_one(
        self,
        request: Request[Any, Any, Any],
        evaluation_id: FromPath[str],
        worst: Annotated[int, QueryParameter(ge=0, le=100)] = 10,
    ) -> EvaluationDetail:
        """One evaluation with its summary, its worst examples and, when it was run with a
        base model, the comparison."""
        engine = services(request).engine
        report = await anyio.to_thread.run_sync(
            lambda: evaluation_report(engine, evaluation_id, worst=worst)
        )
        return EvaluationDetail(
            **public(report.evaluation).model_dump(),
            comparison=report.comparison,
            worst=[result_public(r) for r in report.worst],
        )

    @get("/{evaluation_id:str}/results")
    async def results(
        self,
        request: Request[Any, Any, Any],
        evaluation_id: FromPath[str],
        limit: PageLimit = 20,
        offset: PageOffset = 0,
    ) -> ResultPage:
        engine = services(request).engine
        rows, total = await anyio.to_thread.run_sync(
            lambda: evaluation_results(engine, evaluation_id, limit=limit, offset=offset)
        )
        return ResultPage(total=total, data=[result_public(r) for r in rows])
