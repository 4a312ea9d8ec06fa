"""The sandbox's files and fine-tuning jobs: in memory, moved along by the clock.

A job's whole life is a function of the time since it was created (``step_seconds`` per
phase): ``validating_files`` for one step, ``running`` for one step per epoch, each ending in a
checkpoint with a lower ``train_loss``, then ``succeeded`` with an ``ft:<base>:sandbox:...``
model that answers like the teacher on the prompts it was trained on. Nothing here is OpenAI.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ORGANISATION = "sandbox"
"""Stands where OpenAI puts the organisation in a fine-tuned model's name."""


@dataclass(frozen=True)
class SandboxConfig:
    step_seconds: float = 1.0
    """How long each phase of a job lasts: validation, then each epoch."""
    epochs: int = 3
    """Training steps when the job asks for ``n_epochs="auto"``; one checkpoint each."""
    file_processing_seconds: float = 0.0
    """How long an uploaded file stays ``uploaded`` before it is ``processed``."""
    refuse_fine_tuning: bool = False
    """Refuse every new job as OpenAI does once self-serve fine-tuning is closed."""
    judge_seconds: float = 0.0
    """How long the sandbox judge takes over a verdict: an evaluation that lasts a while."""
    student_skill: float = 0.9
    """Share of prompts it was not trained on that a sandbox ``ft:`` model answers as the
    teacher of its training data would (picked by a hash of the prompt); it answers the rest
    like its base model."""


class SandboxError(Exception):
    def __init__(self, status: int, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        }


CLOSED_MESSAGE = (
    "Fine-tuning is not available for your organization: self-serve fine-tuning no longer "
    "accepts new jobs. (stillroom sandbox)"
)


def prompt_key(messages: list[Any]) -> str:
    """What identifies a prompt: the messages before the answer."""
    return json.dumps(messages, sort_keys=True, separators=(",", ":"))


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _training_pairs(content: bytes) -> dict[str, dict[str, Any]]:
    """prompt key (and last user text) -> the assistant answer of each example."""
    pairs: dict[str, dict[str, Any]] = {}
    for line in content.splitlines():
        if not line.strip():
            continue
        example = json.loads(line)
        messages = example.get("messages") or []
        if messages and messages[-1].get("role") == "assistant":
            answer, prompt = messages[-1], messages[:-1]
            pairs[prompt_key(prompt)] = answer
            pairs["user:" + last_user_text(prompt)] = answer
    return pairs


@dataclass
class _Job:
    body: dict[str, Any]
    started: float
    steps: int
    pairs: dict[str, dict[str, Any]]
    tokens: int
    cancelled_after: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class Sandbox:
    """All the sandbox's state; every method is called from one event loop."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, _Job] = {}
        self._ids = itertools.count(1)

    # Files.
    def upload(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        number = next(self._ids)
        file_id = f"file-sandbox{number:06d}"
        self.files[file_id] = {
            "object": "file",
            "id": file_id,
            "purpose": purpose,
            "filename": filename,
            "bytes": len(content),
            "created_at": int(self.clock()),
            "_created": self.clock(),
            "status": "uploaded",
            "status_details": None,
        }
        self.contents[file_id] = content
        return self.file(file_id)

    def file(self, file_id: str) -> dict[str, Any]:
        found = self.files.get(file_id)
        if found is None:
            raise SandboxError(404, f"No such File object: {file_id}", code="not_found", param="id")
        if found["status"] == "uploaded" and (
            self.clock() - found["_created"] >= self.config.file_processing_seconds
        ):
            try:
                _training_pairs(self.contents[file_id])
                found["status"] = "processed"
            except (ValueError, AttributeError) as exc:
                found["status"] = "error"
                found["status_details"] = f"Invalid file format: {exc}"
        return {k: v for k, v in found.items() if not k.startswith("_")}

    # Jobs.
    def create_job(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.config.refuse_fine_tuning:
            raise SandboxError(400, CLOSED_MESSAGE, code="fine_tuning_unavailable")
        model, training_file = request.get("model"), request.get("training_file")
        if not isinstance(model, str) or not isinstance(training_file, str):
            raise SandboxError(400, "'model' and 'training_file' are required", code="invalid")
        for name in ("training_file", "validation_file"):
            file_id = request.get(name)
            if file_id is None:
                continue
            found = self.file(file_id)
            status = found["status"]
            if status == "uploaded":
                raise SandboxError(
                    400, f"File {file_id} is still being processed.", code="invalid", param=name
                )
            if status != "processed":
                raise SandboxError(
                    400,
                    f"Invalid file {file_id}: {found['status_details']}",
                    code="invalid_file",
                    param=name,
                )
        method = request.get("method") or {"type": "supervised"}
        kind = method.get("type", "supervised")
        hyper = dict((method.get(kind) or {}).get("hyperparameters") or {})
        epochs = hyper.get("n_epochs")
        steps = epochs if isinstance(epochs, int) else self.config.epochs
        content = self.contents[training_file]
        number = next(self._ids)
        job_id = f"ftjob-sandbox{number:06d}"
        now = self.clock()
        body: dict[str, Any] = {
            "object": "fine_tuning.job",
            "id": job_id,
            "model": model,
            "created_at": int(now),
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": "org-sandbox",
            "result_files": [],
            "status": "validating_files",
            "validation_file": request.get("validation_file"),
            "training_file": training_file,
            "hyperparameters": {
                "n_epochs": steps,
                "batch_size": hyper.get("batch_size", "auto"),
                "learning_rate_multiplier": hyper.get("learning_rate_multiplier", "auto"),
            },
            "method": {"type": kind, kind: {"hyperparameters": hyper}},
            "trained_tokens": None,
            "error": None,
            "user_provided_suffix": request.get("suffix"),
            "seed": request.get("seed") or 42,
            "estimated_finish": None,
            "integrations": [],
            "metadata": request.get("metadata"),
        }
        tokens = len(content.split()) * steps
        self.jobs[job_id] = _Job(body, now, steps, _training_pairs(content), tokens)
        return self.job(job_id)

    def _require(self, job_id: str) -> _Job:
        found = self.jobs.get(job_id)
        if found is None:
            raise SandboxError(
                404,
                f"Could not find fine tune: {job_id}",
                code="fine_tune_not_found",
                param="fine_tune_id",
            )
        return found

    def _model_name(self, job: _Job) -> str:
        suffix = job.body["user_provided_suffix"] or ""
        return f"ft:{job.body['model']}:{ORGANISATION}:{suffix}:{job.body['id'][-6:]}"

    def _timeline(self, job: _Job) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        """Events (oldest first), checkpoints and state as of now."""
        step, body = self.config.step_seconds, job.body
        elapsed = self.clock() - job.started
        if job.cancelled_after is not None:
            elapsed = job.cancelled_after
        planned: list[tuple[float, str, dict[str, Any] | None]] = [
            (0, f"Created fine-tuning job: {body['id']}", None),
            (0, f"Validating training file: {body['training_file']}", None),
            (step, "Files validated, moving job to queued state", None),
            (step, "Fine-tuning job started", None),
        ]
        checkpoints = []
        for number in range(1, job.steps + 1):
            at, loss = step * (1 + number), round(2.0 * 0.6**number, 4)
            data = {"step": number, "total_steps": job.steps, "train_loss": loss}
            planned.append((at, f"Step {number}/{job.steps}: training loss={loss}", data))
            if at <= elapsed:
                checkpoints.append(
                    {
                        "object": "fine_tuning.job.checkpoint",
                        "id": f"ftckpt-{body['id'][-6:]}-{number}",
                        "created_at": int(job.started + at),
                        "fine_tuned_model_checkpoint": f"{self._model_name(job)}:ckpt-step-{number}",
                        "fine_tuning_job_id": body["id"],
                        "metrics": {"step": number, "train_loss": loss},
                        "step_number": number,
                    }
                )
        done_at = step * (1 + job.steps)
        planned.append((done_at, f"New fine-tuned model created: {self._model_name(job)}", None))
        planned.append((done_at, "The job has successfully completed", None))
        events = [
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{body['id'][-6:]}-{index}",
                "created_at": int(job.started + at),
                "level": "info",
                "message": message,
                "data": data or {},
                "type": "metrics" if data else "message",
            }
            for index, (at, message, data) in enumerate(planned)
            if at <= elapsed
        ]
        if job.cancelled_after is not None:
            state = "cancelled"
        elif elapsed >= done_at:
            state = "succeeded"
        else:
            state = "running" if elapsed >= step else "validating_files"
        return events, checkpoints, state

    def job(self, job_id: str) -> dict[str, Any]:
        job = self._require(job_id)
        _, _, state = self._timeline(job)
        body = dict(job.body, status=state)
        if state == "succeeded":
            body["fine_tuned_model"] = self._model_name(job)
            body["trained_tokens"] = job.tokens
            body["finished_at"] = int(job.started + self.config.step_seconds * (1 + job.steps))
        return body

    def list_jobs(self, metadata: dict[str, str]) -> list[dict[str, Any]]:
        found = [self.job(job_id) for job_id in reversed(self.jobs)]
        return [
            job
            for job in found
            if all((job.get("metadata") or {}).get(k) == v for k, v in metadata.items())
        ]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Newest first, as OpenAI lists them."""
        job = self._require(job_id)
        events, _, _ = self._timeline(job)
        if job.cancelled_after is not None:
            events.append(
                {
                    "object": "fine_tuning.job.event",
                    "id": f"ftevent-{job_id[-6:]}-cancelled",
                    "created_at": int(job.started + job.cancelled_after),
                    "level": "info",
                    "message": "Fine-tuning job cancelled",
                    "data": {},
                    "type": "message",
                }
            )
        return list(reversed(events))

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        _, checkpoints, _ = self._timeline(self._require(job_id))
        return list(reversed(checkpoints))

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self._require(job_id)
        _, _, state = self._timeline(job)
        if state in ("succeeded", "failed", "cancelled"):
            raise SandboxError(400, f"Job {job_id} has already completed.", code="invalid")
        job.cancelled_after = self.clock() - job.started
        return self.job(job_id)

    def trained_answer(self, model: str, messages: list[Any]) -> dict[str, Any] | None:
        """What a sandbox ``ft:`` model (or checkpoint) learnt for this prompt, if anything;
        raises 404 for an ``ft:`` model the sandbox never made."""
        for job in self.jobs.values():
            name = self._model_name(job)
            trained = self.job(job.body["id"])["status"] == "succeeded"
            if trained and (model == name or model.startswith(name + ":ckpt-step-")):
                return job.pairs.get(prompt_key(messages)) or job.pairs.get(
                    "user:" + last_user_text(messages)
                )
        raise SandboxError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )

    def learnt_teacher(self, model: str) -> str | None:
        """The model whose answers trained ``model``: the sandbox names itself in each answer."""
        for job in self.jobs.values():
            if model.startswith(self._model_name(job)):
                for answer in job.pairs.values():
                    content = answer.get("content")
                    if isinstance(content, str) and content.startswith("[") and "]" in content:
                        return content[1 : content.index("]")]
        return None

    def base_model_of(self, model: str) -> str:
        return model.split(":")[1] if model.startswith("ft:") else model

    def models(self) -> list[str]:
        found = (self.job(job_id)["fine_tuned_model"] for job_id in self.jobs)
        return [name for name in found if name]
