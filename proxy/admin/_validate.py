"""The fine-tuning data validator over HTTP, under /admin.

``POST /admin/validate`` takes either a JSONL body (any content type but JSON: the file itself)
or a JSON reference ``{"dataset_id": ..., "split": ...}``; ``GET
/admin/datasets/{id}/validation`` validates a dataset split. Both answer 200 with the report:
``passed: false`` is a verdict on the data, not a failed request.
"""

from __future__ import annotations

import tempfile
from typing import IO, Annotated, Any, Literal

import anyio.to_thread
import orjson
from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finetune import (
    DEFAULT_BASE_MODEL,
    MAX_FILE_BYTES,
    ValidationOptions,
    ValidationReport,
    split_lines,
    validate_dataset,
    validate_jsonl,
)
from proxy._errors import InvalidRequest
from proxy._services import services
from proxy._settings import Settings
from proxy.admin._base import admin_guard
from proxy.admin._datasets import export_hook

_IN_MEMORY_BYTES = 8 * 1024 * 1024
"""A posted file larger than this waits on disk, not in memory, until it is read."""
MAX_EPOCHS = 50
"""OpenAI's upper bound for ``n_epochs``."""


Split = Literal["train", "validation", "test", "all"]
BaseModelQuery = Annotated[str | None, QueryParameter(min_length=1, max_length=200)]
"""Decides the encoding, the per-example token limit and the price [default: gpt-4o-mini]."""
EpochsQuery = Annotated[int | None, QueryParameter(ge=1, le=MAX_EPOCHS)]
"""Epochs for the cost estimate [default: OpenAI's automatic choice]."""


class DatasetValidation(BaseModel):
    """Validate a dataset split as an upload would send it (exported, redacted as configured)."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=40)
    split: Split = "train"
    base_model: str | None = Field(default=None, min_length=1, max_length=200)
    epochs: int | None = Field(default=None, ge=1, le=MAX_EPOCHS)


def _options(settings: Settings, base_model: str | None, epochs: int | None) -> ValidationOptions:
    return ValidationOptions(
        base_model=base_model or DEFAULT_BASE_MODEL,
        epochs=epochs,
        prices=settings.training_prices,
    )


def _dataset_reference(body: bytes) -> DatasetValidation | None:
    """The reference a JSON body holds, or None when the body is JSONL data itself."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or "dataset_id" not in parsed:
        return None
    try:
        return DatasetValidation.model_validate(parsed)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequest(
            f"Invalid dataset reference: '{param}': {first['msg']}",
            param=param,
            code="invalid_value",
        ) from None


class ValidationController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["validation"]

    @post("/validate", status_code=200, request_max_body_size=MAX_FILE_BYTES)
    async def validate(
        self,
        request: Request[Any, Any, Any],
        base_model: BaseModelQuery = None,
        epochs: EpochsQuery = None,
    ) -> ValidationReport:
        """Validate chat fine-tuning JSONL sent as the body (``application/jsonl``,
        ``application/x-ndjson``, ``text/plain``, ...), or, with ``application/json``, the
        dataset split named by ``{"dataset_id", "split", "base_model", "epochs"}``.
        ``base_model`` decides encoding, token limit and price; ``epochs`` defaults to
        OpenAI's automatic choice."""
        found = services(request)
        if request.content_type[0] == "application/json":
            body = await request.body()
            reference = _dataset_reference(body)
            if reference is not None:
                return await self._dataset(request, reference)
            options = _options(found.settings, base_model, epochs)
            return await anyio.to_thread.run_sync(validate_jsonl, split_lines(body), options)
        spool = await _spool(request)
        try:
            options = _options(found.settings, base_model, epochs)
            return await anyio.to_thread.run_sync(validate_jsonl, spool, options)
        finally:
            spool.close()

    @get("/datasets/{dataset_id:str}/validation")
    async def dataset_validation(
        self,
        request: Request[Any, Any, Any],
        dataset_id: FromPath[str],
        split: Annotated[Split, QueryParameter()] = "train",
        base_model: BaseModelQuery = None,
        epochs: EpochsQuery = None,
    ) -> ValidationReport:
        """Validate one split of a dataset exactly as its upload would send it."""
        reference = DatasetValidation(
            dataset_id=dataset_id, split=split, base_model=base_model, epochs=epochs
        )
        return await self._dataset(request, reference)

    async def _dataset(
        self, request: Request[Any, Any, Any], reference: DatasetValidation
    ) -> ValidationReport:
        found = services(request)
        options = _options(found.settings, reference.base_model, reference.epochs)
        redact = export_hook(found.settings)

        def run() -> ValidationReport:
            return validate_dataset(
                found.engine,
                reference.dataset_id,
                split=reference.split,
                options=options,
                redact=redact,
            )

        return await anyio.to_thread.run_sync(run)


async def _spool(request: Request[Any, Any, Any]) -> IO[bytes]:
    """The body, streamed into memory and past ``_IN_MEMORY_BYTES`` onto disk."""
    spool = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES)  # noqa: SIM115 - closed by the caller
    try:
        async for chunk in request.stream():
            await anyio.to_thread.run_sync(spool.write, chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool
