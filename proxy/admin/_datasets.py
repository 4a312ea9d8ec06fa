"""The datasets admin API under /admin/datasets: build, list, read, diff, export, delete.

Handlers hand over to the ``finetune`` dataset services off the event loop; their refusals
become OpenAI-shaped errors in ``proxy._errors``. An export streams page by page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import anyio.to_thread
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream
from pydantic import BaseModel, ConfigDict, Field

from finetune import (
    DUPLICATE_POLICIES,
    DatasetDiff,
    DuplicatePolicy,
    ExportPage,
    Redact,
    SplitRatios,
    create_dataset,
    delete_dataset,
    diff_datasets,
    export_redactor,
    filter_from_params,
    get_dataset,
    list_datasets,
    list_duplicates,
    open_export,
)
from proxy._errors import InvalidRequest
from proxy._services import services
from proxy._settings import Settings
from proxy.admin._base import admin_guard
from storage import CaptureFilter, Dataset


class SplitBody(BaseModel):
    """Shares of each split; together 1."""

    model_config = ConfigDict(extra="forbid")

    train: float = Field(default=0.8, ge=0, le=1)
    validation: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    """Letters, digits, '.', '_' and '-'; each build of a name is its next version."""
    filter: CaptureFilter = Field(default_factory=lambda: CaptureFilter(status=["approved"]))
    """Which captures; approved ones unless given."""
    split: SplitBody = Field(default_factory=SplitBody)
    dedupe: DuplicatePolicy = "latest_approved"
    """Which capture of a repeated prompt is kept: the latest approved, or the best rated."""


class DatasetPublic(BaseModel):
    id: str
    name: str
    version: int
    created_at: datetime
    filter: dict[str, Any]
    split: dict[str, float]
    counts: dict[str, Any]
    """total, train, validation, test, selected, duplicates_dropped, threaded_dropped,
    skipped (by reason), untaught_turns (weight 0), preference_pairs."""
    lineage: dict[str, Any]


class DatasetList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DatasetPublic]


class DatasetDeleted(BaseModel):
    id: str
    deleted: bool


class DuplicateGroupPublic(BaseModel):
    prompt_hash: str
    size: int
    capture_ids: list[str]
    """Best first by the policy: a build keeps the first with an answer."""


class DuplicateList(BaseModel):
    object: Literal["list"] = "list"
    policy: DuplicatePolicy
    total_groups: int
    data: list[DuplicateGroupPublic]


class DiffPublic(BaseModel):
    a: str
    b: str
    added: int
    removed: int
    changed: int
    unchanged: int
    added_examples: list[dict[str, Any]]
    removed_examples: list[dict[str, Any]]
    changed_examples: list[dict[str, Any]]


def public(dataset: Dataset) -> DatasetPublic:
    found = DatasetPublic.model_validate(dataset, from_attributes=True)
    if found.created_at.tzinfo is None:
        # SQLite hands times back without their zone; they were written in UTC.
        found.created_at = found.created_at.replace(tzinfo=UTC)
    return found


def build_lineage(settings: Settings, source: str) -> dict[str, Any]:
    """What a dataset records of how it was made, beside its filter and duplicate policy."""
    try:
        release = version("stillroom")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        release = "unknown"
    return {
        "created_by": source,
        "stillroom_version": release,
        "rules": [rule.model_dump(mode="json") for rule in settings.rules],
        "redaction": settings.redaction.model_dump(mode="json"),
    }


def export_hook(settings: Settings) -> Redact | None:
    """With export redaction on, every exported record passes through the redactor."""
    redactor = export_redactor(settings.redaction)
    return redactor.redact_value if redactor is not None else None


def _int_param(value: str | None, name: str, default: int, high: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) > high:
        raise InvalidRequest(f"'{name}' must be an integer from 0 to {high}.", param=name)
    return int(value)


class DatasetsController(Controller):
    path = "/admin/datasets"
    guards = [admin_guard]
    tags = ["datasets"]

    @get("/")
    async def list_datasets(
        self, request: Request[Any, Any, Any], name: FromQuery[str | None] = None
    ) -> DatasetList:
        """Every dataset, newest first; ``name`` for the versions of one."""
        engine = services(request).engine
        found = await anyio.to_thread.run_sync(lambda: list_datasets(engine, name=name))
        return DatasetList(data=[public(d) for d in found])

    @post("/", status_code=201)
    async def create_dataset(
        self, request: Request[Any, Any, Any], data: JSONBody[DatasetCreate]
    ) -> DatasetPublic:
        """Freeze the captures the filter selects into the next version of ``name``."""
        found = services(request)
        lineage = build_lineage(found.settings, "admin api")

        def run() -> Dataset:
            return create_dataset(
                found.engine,
                data.name,
                data.filter,
                ratios=SplitRatios(**data.split.model_dump()),
                dedupe=data.dedupe,
                lineage=lineage,
            )

        return public(await anyio.to_thread.run_sync(run))

    @get("/duplicates")
    async def duplicates(self, request: Request[Any, Any, Any]) -> DuplicateList:
        """Prompts the filter selects more than once, largest groups first. The filter's query
        parameters are those of ``GET /admin/captures``; besides them ``policy``
        (latest_approved or best_rated), ``limit`` (at most 500) and ``offset``."""
        params: dict[str, str] = {}
        rest: list[tuple[str, str]] = []
        for key, value in request.query_params.multi_items():
            if key in ("policy", "limit", "offset"):
                params[key] = value
            else:
                rest.append((key, value))
        policy = params.get("policy", "latest_approved")
        if policy not in DUPLICATE_POLICIES:
            raise InvalidRequest(
                f"'policy' must be one of {', '.join(DUPLICATE_POLICIES)}.", param="policy"
            )
        limit = _int_param(params.get("limit"), "limit", 50, 500)
        offset = _int_param(params.get("offset"), "offset", 0, 10**9)
        capture_filter = filter_from_params(rest)
        engine = services(request).engine
        groups, total = await anyio.to_thread.run_sync(
            lambda: list_duplicates(
                engine, capture_filter, policy=policy, limit=limit, offset=offset
            )
        )
        return DuplicateList(
            policy=policy,
            total_groups=total,
            data=[DuplicateGroupPublic.model_validate(g, from_attributes=True) for g in groups],
        )

    @get("/{dataset_id:str}")
    async def get_dataset(
        self, request: Request[Any, Any, Any], dataset_id: FromPath[str]
    ) -> DatasetPublic:
        engine = services(request).engine
        return public(await anyio.to_thread.run_sync(get_dataset, engine, dataset_id))

    @delete("/{dataset_id:str}", status_code=200)
    async def delete_dataset(
        self, request: Request[Any, Any, Any], dataset_id: FromPath[str]
    ) -> DatasetDeleted:
        """Delete the dataset and its examples; its captures stay."""
        engine = services(request).engine
        gone = await anyio.to_thread.run_sync(delete_dataset, engine, dataset_id)
        return DatasetDeleted(id=gone.id, deleted=True)

    @get("/{a:str}/diff/{b:str}")
    async def diff(
        self,
        request: Request[Any, Any, Any],
        a: FromPath[str],
        b: FromPath[str],
        limit: FromQuery[int] = 100,
    ) -> DiffPublic:
        """What changed from dataset ``a`` to ``b``, matched by prompt hash: examples added,
        removed, and changed (another capture or another example for the same prompt); each
        list holds at most ``limit`` entries, the counts cover all."""
        if not 0 <= limit <= 10_000:
            raise InvalidRequest("'limit' must be from 0 to 10000.", param="limit")
        engine = services(request).engine
        found: DatasetDiff = await anyio.to_thread.run_sync(
            lambda: diff_datasets(engine, a, b, limit=limit)
        )
        return DiffPublic.model_validate(found, from_attributes=True)

    @get("/{dataset_id:str}/export")
    async def export(
        self,
        request: Request[Any, Any, Any],
        dataset_id: FromPath[str],
        split: FromQuery[str] = "all",
        format: FromQuery[str] = "sft",
    ) -> Stream:
        """JSONL, streamed: ``format=sft`` for OpenAI chat fine-tuning lines, ``dpo`` for
        preference lines; ``split`` is train, validation, test or all. With export redaction
        configured, every line is redacted."""
        found = services(request)
        redact = export_hook(found.settings)
        dataset, pages = await anyio.to_thread.run_sync(
            lambda: open_export(found.engine, dataset_id, split=split, fmt=format, redact=redact)
        )
        filename = f"{dataset.name}-v{dataset.version}-{split}-{format}.jsonl"
        return Stream(
            _chunks(pages),
            media_type="application/jsonl",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )


def _chunks(pages: Iterator[ExportPage]) -> Iterator[bytes]:
    # Litestar pulls a sync iterator from a worker thread, one page per hop.
    for page in pages:
        if page.lines:
            yield b"".join(page.lines)
