"""The OpenAI training backend, through the official SDK.

The SDK retries transient failures (429, 5xx, connection) ``max_retries`` times with backoff;
what still fails is translated here, in one place, into the errors of ``finetune.training._protocol``.
A 400 saying a file is still being processed is transient too, and retried on our own bound.

OpenAI announced on 2026-05-07 that self-serve fine-tuning takes no new jobs from 2027-01-06:
such a refusal becomes ``FineTuningClosed`` with a message that says so plainly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai

from finetune.training._protocol import (
    BackendCheckpoint,
    BackendConfig,
    BackendEvent,
    BackendRefused,
    BackendStatus,
    BackendUnavailable,
    FileProcessingFailed,
    FileStillProcessing,
    FineTuningClosed,
    InvalidTrainingRequest,
    JobSpec,
    TrainingError,
    TrainingJobNotFound,
)

_FILE_PROCESSING = re.compile(r"(still|being|not yet|currently)\s+(being\s+)?process|not\s+ready")
_FINE_TUNING = re.compile(r"fine[\s_-]?tun")
_CLOSED = re.compile(
    r"not (available|enabled|allowed|accepting)|unavailable|closed|no longer|disabled|"
    r"discontinued|not permitted"
)
_WHOSE = re.compile(r"organi[sz]ation|self[\s_-]?serve|account|new (fine[\s_-]?tuning )?jobs")
_MAX_EVENTS = 10_000


def _error_fields(exc: openai.APIStatusError) -> tuple[str, str | None, str | None]:
    """(message, param, code) from an OpenAI-shaped error body, whatever else came."""
    body = exc.body
    if isinstance(body, dict):
        nested = body.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else body
        message = inner.get("message")
        if isinstance(message, str) and message:
            param, code = inner.get("param"), inner.get("code")
            return (
                message,
                param if isinstance(param, str) else None,
                code if isinstance(code, str) else None,
            )
    return exc.message, None, None


def is_fine_tuning_closed(message: str, code: str | None = None) -> bool:
    """Whether a refusal says fine-tuning is closed to the organisation (matched loosely:
    the wording of a future refusal is not known)."""
    text = f"{message} {code or ''}".lower().replace("_", " ")
    return bool(_FINE_TUNING.search(text) and _CLOSED.search(text) and _WHOSE.search(text))


def _closed_message(said: str) -> str:
    return (
        "OpenAI refused to start the fine-tuning job because self-serve fine-tuning is closed "
        "to this organisation: OpenAI announced on 2026-05-07 that it accepts no new "
        "self-serve fine-tuning jobs from 2027-01-06. Train with another backend (an "
        f"OpenAI-compatible fine-tuning API, or self-hosted training). OpenAI said: {said}"
    )


def translate(exc: openai.OpenAIError) -> TrainingError:
    """The one place an SDK error becomes one of ours."""
    if isinstance(exc, openai.APIConnectionError):
        return BackendUnavailable(f"cannot reach the training backend: {exc}")
    if not isinstance(exc, openai.APIStatusError):
        return BackendUnavailable(f"training backend error: {exc}")
    message, param, code = _error_fields(exc)
    status = exc.status_code
    if status == 429 or status >= 500:
        return BackendUnavailable(
            f"the training backend is unavailable ({status}): {message}", code=code
        )
    if 400 <= status < 500 and is_fine_tuning_closed(message, code):
        return FineTuningClosed(_closed_message(message), code="fine_tuning_closed")
    if status == 404:
        return TrainingJobNotFound(message, param=param, code=code or "not_found")
    return BackendRefused(
        f"the training backend refused ({status}): {message}", param=param, code=code
    )


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except openai.OpenAIError as exc:
        raise translate(exc) from exc


def _status(job: Any) -> BackendStatus:
    error = getattr(job, "error", None)
    found = None
    if error is not None and getattr(error, "message", None):
        found = {"code": error.code, "message": error.message, "param": error.param}
    return BackendStatus(
        backend_job_id=job.id,
        state=job.status,
        fine_tuned_model=job.fine_tuned_model,
        trained_tokens=job.trained_tokens,
        error=found,
    )


def method_body(spec: JobSpec) -> dict[str, Any]:
    """The ``method`` object of a job: its type and hyperparameters (beta for DPO)."""
    config = spec.config
    hyper: dict[str, Any] = config.hyperparameters.model_dump()
    if config.method == "dpo" and config.beta is not None:
        hyper["beta"] = config.beta
    return {"type": config.method, config.method: {"hyperparameters": hyper}}


class OpenAIBackend:
    """``TrainingBackend`` for OpenAI and servers that speak its fine-tuning API."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str,
        max_retries: int = 2,
        timeout_seconds: float = 120.0,
        file_retry_seconds: float = 5.0,
        file_retry_attempts: int = 12,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=max_retries,
            timeout=timeout_seconds,
        )
        self.file_retry_seconds = file_retry_seconds
        self.file_retry_attempts = file_retry_attempts
        self.sleep = sleep

    def upload(self, content: bytes | Path, *, filename: str, purpose: str = "fine-tune") -> str:
        with _translated():
            if isinstance(content, Path):
                with content.open("rb") as handle:
                    created = self.client.files.create(
                        file=(filename, handle),
                        purpose=purpose,  # type: ignore[arg-type]
                    )
            else:
                created = self.client.files.create(
                    file=(filename, content),
                    purpose=purpose,  # type: ignore[arg-type]
                )
        return created.id

    def wait_for_file(self, file_id: str, *, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while True:
            with _translated():
                found = self.client.files.retrieve(file_id)
            if found.status in (None, "processed"):
                return
            if found.status == "error":
                details = found.status_details or "no details given"
                raise FileProcessingFailed(
                    f"the backend could not process file {file_id}: {details}",
                    param="training_file",
                    code="file_processing_failed",
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise FileStillProcessing(
                    f"file {file_id} was still being processed after {timeout_seconds:g} s",
                    code="file_still_processing",
                )
            self.sleep(min(max(self.file_retry_seconds, 0.05), left))

    def find_job(self, metadata: Mapping[str, str]) -> BackendStatus | None:
        with _translated():
            page = self.client.fine_tuning.jobs.list(metadata=dict(metadata), limit=100)
        # A compatible server may ignore the filter: check each job's metadata ourselves.
        for job in page.data:
            found = job.metadata or {}
            if all(found.get(key) == value for key, value in metadata.items()):
                return _status(job)
        return None

    def start(self, spec: JobSpec) -> BackendStatus:
        config = spec.config
        arguments: dict[str, Any] = {
            "model": config.base_model,
            "training_file": spec.training_file,
            "method": method_body(spec),
            "metadata": dict(spec.metadata),
        }
        if spec.validation_file is not None:
            arguments["validation_file"] = spec.validation_file
        if config.suffix is not None:
            arguments["suffix"] = config.suffix
        if config.seed is not None:
            arguments["seed"] = config.seed
        for attempt in range(self.file_retry_attempts + 1):
            try:
                job = self.client.fine_tuning.jobs.create(**arguments)
            except openai.BadRequestError as exc:
                message, _, _ = _error_fields(exc)
                if not _FILE_PROCESSING.search(message.lower()):
                    raise translate(exc) from exc
                if attempt == self.file_retry_attempts:
                    raise FileStillProcessing(
                        f"the backend still calls the files unprocessed: {message}",
                        code="file_still_processing",
                    ) from exc
                self.sleep(self.file_retry_seconds)
            except openai.OpenAIError as exc:
                raise translate(exc) from exc
            else:
                return _status(job)
        raise AssertionError("unreachable")  # pragma: no cover

    def status(self, job_id: str) -> BackendStatus:
        with _translated():
            return _status(self.client.fine_tuning.jobs.retrieve(job_id))

    def events(self, job_id: str, *, after: str | None = None) -> list[BackendEvent]:
        # The API lists newest first; read back until the last event we already have.
        newer: list[BackendEvent] = []
        with _translated():
            for event in self.client.fine_tuning.jobs.list_events(job_id, limit=100):
                if event.id == after or len(newer) >= _MAX_EVENTS:
                    break
                data = event.data if isinstance(event.data, dict) else None
                newer.append(
                    BackendEvent(
                        id=event.id,
                        created_at=event.created_at,
                        level=event.level,
                        message=event.message,
                        type=event.type,
                        data=data,
                    )
                )
        return list(reversed(newer))

    def checkpoints(self, job_id: str) -> list[BackendCheckpoint]:
        found: list[BackendCheckpoint] = []
        with _translated():
            for checkpoint in self.client.fine_tuning.jobs.checkpoints.list(job_id, limit=100):
                metrics = checkpoint.metrics.model_dump(exclude_none=True)
                found.append(
                    BackendCheckpoint(
                        id=checkpoint.id,
                        step=checkpoint.step_number,
                        model=checkpoint.fine_tuned_model_checkpoint,
                        created_at=checkpoint.created_at,
                        metrics=metrics,
                    )
                )
        return sorted(found, key=lambda c: c.step)

    def cancel(self, job_id: str) -> BackendStatus:
        with _translated():
            return _status(self.client.fine_tuning.jobs.cancel(job_id))


def openai_from_config(name: str, config: BackendConfig) -> OpenAIBackend:
    key = config.api_key.get_secret_value() if config.api_key else ""
    if not key:
        # The SDK would look for OPENAI_API_KEY itself and fail with its own words.
        raise InvalidTrainingRequest(
            f"training backend '{name}' has no API key: set STILLROOM_UPSTREAM_API_KEY, or "
            f"training_backends.{name}.api_key in the config",
            param="backend",
            code="missing_api_key",
        )
    return OpenAIBackend(
        name,
        base_url=config.base_url or "https://api.openai.com/v1",
        api_key=key,
        max_retries=config.max_retries,
        timeout_seconds=config.timeout_seconds,
        file_retry_seconds=config.file_retry_seconds,
        file_retry_attempts=config.file_retry_attempts,
    )
