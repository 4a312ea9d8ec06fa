"""The training-backend protocol, what crosses it, and the errors a backend raises.

    TrainingError                    any refusal of the training services
    ├── TrainingJobNotFound          no such job (ours, or the backend's)
    ├── InvalidTrainingRequest       bad spec, unknown backend, data that failed validation
    ├── BackendRefused               the backend said no, permanently (a 4xx)
    │   ├── FineTuningClosed         self-serve fine-tuning is closed to the organisation
    │   └── FileProcessingFailed     an uploaded file will never be usable
    └── BackendUnavailable           transient (429, 5xx, connection) and retries ran out
        └── FileStillProcessing      an uploaded file was not ready within the bound

A backend is anything with the methods of ``TrainingBackend``; the registry
(``finetune.training._registry``) finds one by kind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    """Each a number or ``"auto"`` (the backend decides)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_epochs: int | Auto = "auto"
    batch_size: int | Auto = "auto"
    learning_rate_multiplier: float | Auto = "auto"


class TrainingConfig(BaseModel):
    """What a caller asks of a fine-tune; with the uploaded files it becomes a ``JobSpec``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str = Field(min_length=1, max_length=200)
    suffix: str | None = Field(default=None, max_length=64)
    """Part of the ``ft:`` model's name."""
    method: Literal["supervised", "dpo"] = "supervised"
    """supervised trains on the chat export; dpo on the preference pairs."""
    beta: float | Auto | None = None
    """DPO only: how strongly the preference weighs against the base model."""
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    seed: int | None = None

    def digest(self) -> str:
        """Stable across processes: the same request hashes the same."""
        body = orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(body).hexdigest()


class JobSpec(BaseModel):
    """Everything ``TrainingBackend.start`` needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: TrainingConfig
    training_file: str
    validation_file: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    """Links the job to stillroom's job, dataset and cycle; also how a retry finds it."""


@dataclass(frozen=True, slots=True)
class BackendStatus:
    backend_job_id: str
    state: str
    """validating_files, queued, running, succeeded, failed or cancelled."""
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: dict[str, Any] | None = None
    """code, message, param, when the job failed."""


@dataclass(frozen=True, slots=True)
class BackendEvent:
    id: str
    created_at: int
    """Unix seconds."""
    level: str
    message: str
    type: str | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class BackendCheckpoint:
    id: str
    step: int
    model: str
    created_at: int
    metrics: dict[str, Any] = field(default_factory=dict)


class TrainingBackend(Protocol):
    """A place that trains models. Every method may raise the errors of this module."""

    name: str
    """Stored with each job, so a restarted process asks the right backend."""

    def upload(self, content: bytes | Path, *, filename: str, purpose: str = "fine-tune") -> str:
        """Store a training file; returns its id."""
        ...

    def wait_for_file(self, file_id: str, *, timeout_seconds: float) -> None:
        """Return once the file is usable. FileProcessingFailed when it never will be;
        FileStillProcessing when it was not ready within the bound."""
        ...

    def find_job(self, metadata: Mapping[str, str]) -> BackendStatus | None:
        """A job already started with this metadata: how a retried launch finds its job."""
        ...

    def start(self, spec: JobSpec) -> BackendStatus:
        """Create the job. FineTuningClosed when the organisation may not fine-tune."""
        ...

    def status(self, job_id: str) -> BackendStatus: ...

    def events(self, job_id: str, *, after: str | None = None) -> list[BackendEvent]:
        """Events newer than the event ``after`` (all when None), oldest first."""
        ...

    def checkpoints(self, job_id: str) -> list[BackendCheckpoint]: ...

    def cancel(self, job_id: str) -> BackendStatus: ...


class BackendConfig(BaseModel):
    """One configured training backend. Keys beyond these are the settings of another kind
    (``local``: see ``LocalTrainingConfig``); its factory checks them, and ``openai`` has none."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = "openai"
    """Which registered implementation: ``openai`` unless another is registered."""
    base_url: str | None = None
    """The backend's API, including ``/v1``; None uses the upstream's."""
    api_key: SecretStr | None = None
    """None uses the upstream key."""
    max_retries: int = Field(default=2, ge=0, le=10)
    """Retries of a transient failure (429, 5xx, connection) before giving up."""
    timeout_seconds: float = Field(default=120.0, gt=0)
    file_retry_seconds: float = Field(default=5.0, ge=0)
    """Pause between tries while the backend says a file is still being processed."""
    file_retry_attempts: int = Field(default=12, ge=0)

    @model_validator(mode="after")
    def _openai_has_no_other_keys(self) -> BackendConfig:
        if self.kind == "openai" and self.model_extra:
            unknown = ", ".join(sorted(self.model_extra))
            raise ValueError(f"unknown setting(s) of an openai training backend: {unknown}")
        return self


class TrainingError(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class TrainingJobNotFound(TrainingError):
    pass


class InvalidTrainingRequest(TrainingError):
    pass


class BackendRefused(TrainingError):
    pass


class FineTuningClosed(BackendRefused):
    pass


class FileProcessingFailed(BackendRefused):
    pass


class BackendUnavailable(TrainingError):
    pass


class FileStillProcessing(BackendUnavailable):
    pass
