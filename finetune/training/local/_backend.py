"""The ``local`` training backend: each job a worker of its own and a job folder.

The backend holds no state of its own: status, events and checkpoints are read from the job
folder and from its runner (the worker's pid, or its Ray job), so a restarted server (a new
backend object) re-attaches to the jobs that are still running. A worker that is gone with no
final status (``kill -9``, out of memory, a lost Ray node) resumes from its last checkpoint or
makes its job ``failed`` with that reason. Cancel stops the worker (SIGTERM, then SIGKILL after
``cancel_grace_seconds``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from finetune.datasets._tokens import TokenCounter
from finetune.datasets._validate import ValidationOptions
from finetune.training._protocol import (
    BackendCheckpoint,
    BackendEvent,
    BackendRefused,
    BackendStatus,
    BackendUnavailable,
    FileProcessingFailed,
    InvalidTrainingRequest,
    JobSpec,
    TrainingConfig,
    TrainingJobNotFound,
)
from finetune.training.local._config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BETA,
    DEFAULT_EPOCHS,
    LocalTrainingConfig,
)
from finetune.training.local._folder import TERMINAL, JobFolder
from finetune.training.local._runner import make_runner


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloaded models (its own rules, without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def resolve_base_model(name: str, *, allow_downloads: bool = False) -> str:
    """A local folder with a ``config.json``, or the cached snapshot of a Hub id; refused, with
    the reason, when neither is there (a Hub id is passed on as is when downloads are allowed)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InvalidTrainingRequest(
                f"base model folder {name} has no config.json: not a Hugging Face model",
                param="base_model",
                code="model_not_found",
            )
        return str(path.resolve())
    looks_like_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if looks_like_id:
        snapshots = hub_cache() / f"models--{name.replace('/', '--')}" / "snapshots"
        if snapshots.is_dir():
            found = sorted(
                (c for c in snapshots.iterdir() if (c / "config.json").is_file()),
                key=lambda c: c.stat().st_mtime,
            )
            if found:
                return str(found[-1])
        if allow_downloads and os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0", "false"):
            return name
    where = "no such folder" if not looks_like_id else f"not in the local cache ({hub_cache()})"
    raise InvalidTrainingRequest(
        f"base model '{name}' cannot be found: {where}; give a local model folder or a Hub id "
        "already downloaded (downloads at run time are off unless allow_downloads is set)",
        param="base_model",
        code="model_not_found",
    )


def model_name(base_model: str, suffix: str | None, job_id: str) -> str:
    """``ft:<base>:local:<suffix>:<job id>``, the way OpenAI names its fine-tuned models."""
    base = base_model.rstrip("/").split("/")[-1] or base_model
    return f"ft:{base}:local:{suffix or ''}:{job_id}"


def _backend_status(job_id: str, status: Mapping[str, Any]) -> BackendStatus:
    error = status.get("error")
    return BackendStatus(
        backend_job_id=job_id,
        state=str(status.get("state") or "queued"),
        fine_tuned_model=status.get("fine_tuned_model"),
        trained_tokens=status.get("trained_tokens"),
        error=error if isinstance(error, dict) else None,
    )


class LocalBackend:
    """``TrainingBackend`` that trains with TRL and PEFT, on this machine or a Ray cluster."""

    def __init__(self, name: str, config: LocalTrainingConfig) -> None:
        self.name = name
        self.config = config
        self.root = config.root.expanduser().resolve()
        self.runner = make_runner(config)

    # -- files ---------------------------------------------------------------------------------

    @property
    def files_dir(self) -> Path:
        return self.root / "files"

    def _file(self, file_id: str) -> Path:
        return self.files_dir / f"{file_id}.jsonl"

    def upload(self, content: bytes | Path, *, filename: str, purpose: str = "fine-tune") -> str:
        body = content.read_bytes() if isinstance(content, Path) else content
        file_id = f"file-local-{hashlib.sha256(body).hexdigest()[:24]}"
        target = self._file(file_id)
        try:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            if not target.is_file():
                temporary = target.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_bytes(body)
                os.replace(temporary, target)
        except OSError as exc:
            raise BackendRefused(
                f"cannot store {filename} under {self.files_dir}: {exc}", code="storage_failed"
            ) from exc
        return file_id

    def wait_for_file(self, file_id: str, *, timeout_seconds: float) -> None:
        if not self._file(file_id).is_file():
            raise FileProcessingFailed(
                f"no uploaded file {file_id} under {self.files_dir}",
                param="training_file",
                code="file_processing_failed",
            )

    # -- jobs ----------------------------------------------------------------------------------

    def job_folder(self, job_id: str) -> JobFolder:
        folder = JobFolder(self.root / job_id)
        if "/" in job_id or job_id.startswith(".") or not folder.exists():
            raise TrainingJobNotFound(f"no local training job {job_id}", code="not_found")
        return folder

    def _folders(self) -> list[JobFolder]:
        if not self.root.is_dir():
            return []
        return [
            JobFolder(child)
            for child in sorted(self.root.iterdir())
            if child.name.startswith("ftjob-") and (child / "spec.json").is_file()
        ]

    def find_job(self, metadata: Mapping[str, str]) -> BackendStatus | None:
        for folder in self._folders():
            found = folder.spec().get("metadata") or {}
            if all(found.get(key) == value for key, value in metadata.items()):
                return self.status(folder.job_id)
        return None

    def hyperparameters(self, spec: JobSpec) -> dict[str, Any]:
        """What ``auto`` and the multiplier come to (documented in the README)."""
        config = spec.config
        hyper = config.hyperparameters
        multiplier = (
            1.0 if hyper.learning_rate_multiplier == "auto" else hyper.learning_rate_multiplier
        )
        return {
            "n_epochs": DEFAULT_EPOCHS if hyper.n_epochs == "auto" else hyper.n_epochs,
            "batch_size": DEFAULT_BATCH_SIZE if hyper.batch_size == "auto" else hyper.batch_size,
            "learning_rate_multiplier": multiplier,
            "learning_rate": multiplier * self.config.base_learning_rate(config.method),
            "beta": DEFAULT_BETA if config.beta in (None, "auto") else config.beta,
            "seed": self.config.seed if config.seed is None else config.seed,
        }

    def start(self, spec: JobSpec) -> BackendStatus:
        config = spec.config
        base_path = resolve_base_model(
            config.base_model, allow_downloads=self.config.allow_downloads
        )
        for file_id in (spec.training_file, spec.validation_file):
            if file_id is not None:
                self.wait_for_file(file_id, timeout_seconds=0)
        job_id = f"ftjob-{secrets.token_hex(6)}"
        folder = JobFolder(self.root / job_id)
        name = model_name(config.base_model, config.suffix, job_id)
        try:
            folder.path.mkdir(parents=True)
            shutil.copyfile(self._file(spec.training_file), folder.train_file)
            if spec.validation_file is not None:
                shutil.copyfile(self._file(spec.validation_file), folder.validation_file)
            folder.write_status("queued", created_at=time.time())
            folder.event("info", f"Created local fine-tuning job {job_id}")
            folder.write_json(
                folder.spec_file,
                {
                    "job_id": job_id,
                    "created_at": time.time(),
                    "method": config.method,
                    "base_model": config.base_model,
                    "base_model_path": base_path,
                    "model_name": name,
                    "training_file": spec.training_file,
                    "validation_file": spec.validation_file,
                    "metadata": dict(spec.metadata),
                    "config": config.model_dump(mode="json"),
                    "hyperparameters": self.hyperparameters(spec),
                    "settings": self.config.model_dump(mode="json"),
                },
            )
            self.runner.launch(folder, attempt=0)
        except OSError as exc:
            shutil.rmtree(folder.path, ignore_errors=True)
            raise BackendRefused(
                f"cannot start local training job under {self.root}: {exc}", code="start_failed"
            ) from exc
        except (BackendRefused, BackendUnavailable):
            shutil.rmtree(folder.path, ignore_errors=True)
            raise
        return self.status(job_id)

    def status(self, job_id: str) -> BackendStatus:
        folder = self.job_folder(job_id)
        # Observed before the status is read: a worker that ends meanwhile has written it.
        gone = self.runner.observe(folder)
        status = folder.status()
        if status.get("state") in TERMINAL or gone is None:
            return _backend_status(job_id, status)
        if gone.stopped:
            folder.write_status("cancelled", error=None)
            folder.event("info", f"Job cancelled: {gone.reason}")
        elif not self._resume(folder, status, gone.reason):
            tail = folder.log_tail(3)
            message = gone.reason + (f"; its log ends: {tail}" if tail else "")
            folder.write_status(
                "failed", error={"code": "worker_died", "message": message[:2000], "param": None}
            )
            folder.event("error", f"The job failed: {message}"[:4000])
        return _backend_status(job_id, folder.status())

    def _resume(self, folder: JobFolder, status: Mapping[str, Any], reason: str) -> bool:
        """Start a dead worker again from its last checkpoint, when one is saved, attempts are
        left and no cancel began. Only one backend (of several replicas) does it."""
        attempt = int(status.get("resumes") or 0) + 1
        found = folder.checkpoints()
        if not found or attempt > self.config.resume_attempts or folder.cancel_file.exists():
            return False
        try:
            (folder.path / f"resume-{attempt}").open("x").close()
        except FileExistsError:
            return True  # another backend is restarting it
        folder.write_status("queued", resumes=attempt)
        folder.event(
            "warning",
            f"{reason[:1].upper()}{reason[1:]}; resuming from the checkpoint at step "
            f"{found[-1][0]} (attempt {attempt} of {self.config.resume_attempts})",
        )
        try:
            self.runner.launch(folder, attempt=attempt)
        except BackendRefused as exc:
            folder.write_status(
                "failed", error={"code": "resume_failed", "message": str(exc), "param": None}
            )
            folder.event("error", f"The job failed: {exc}")
        return True

    def events(self, job_id: str, *, after: str | None = None) -> list[BackendEvent]:
        found = self.job_folder(job_id).events()
        if after is not None:
            ids = [event["id"] for event in found]
            if after in ids:
                found = found[ids.index(after) + 1 :]
        return [
            BackendEvent(
                id=event["id"],
                created_at=int(event.get("created_at") or 0),
                level=str(event.get("level") or "info"),
                message=str(event.get("message") or ""),
                type=event.get("type"),
                data=event.get("data") if isinstance(event.get("data"), dict) else None,
            )
            for event in found
        ]

    def checkpoints(self, job_id: str) -> list[BackendCheckpoint]:
        folder = self.job_folder(job_id)
        name = folder.spec().get("model_name") or job_id
        found = []
        for step, path in folder.checkpoints():
            metrics: dict[str, Any] = {"step": step}
            try:
                state = orjson.loads((path / "trainer_state.json").read_bytes())
            except (OSError, orjson.JSONDecodeError):
                state = {}
            for entry in state.get("log_history") or []:
                if entry.get("step") == step and "loss" in entry:
                    metrics["train_loss"] = entry["loss"]
                if entry.get("step") == step and "eval_loss" in entry:
                    metrics["valid_loss"] = entry["eval_loss"]
            found.append(
                BackendCheckpoint(
                    id=f"{job_id}:checkpoint-{step}",
                    step=step,
                    model=f"{name}:ckpt-step-{step}",
                    created_at=int(path.stat().st_mtime),
                    metrics=metrics,
                )
            )
        return found

    def cancel(self, job_id: str) -> BackendStatus:
        folder = self.job_folder(job_id)
        if folder.status().get("state") in TERMINAL:
            return self.status(job_id)
        folder.cancel_file.touch()
        self.runner.stop(folder, grace_seconds=self.config.cancel_grace_seconds)
        if folder.status().get("state") not in TERMINAL:
            folder.write_status("cancelled", error=None)
            folder.event("info", "Job cancelled")
        return self.status(job_id)

    # -- for the validator and the serving side -------------------------------------------------

    def validation_options(self, config: TrainingConfig) -> ValidationOptions | None:
        """Token counts with the base model's own tokenizer, and its context length (the
        smaller of ``max_length`` and the model's positions); None when the base model or its
        ``tokenizer.json`` is not at hand (the launch then refuses a missing model itself)."""
        try:
            base = Path(
                resolve_base_model(config.base_model, allow_downloads=self.config.allow_downloads)
            )
        except InvalidTrainingRequest:
            return None
        if not (base / "tokenizer.json").is_file():
            return None
        try:
            from tokenizers import Tokenizer
        except ImportError:
            return None
        tokenizer = Tokenizer.from_file(str(base / "tokenizer.json"))

        def encode(text: str) -> list[int]:
            return list(tokenizer.encode(text, add_special_tokens=False).ids)

        limit = self.config.max_length
        try:
            positions = orjson.loads((base / "config.json").read_bytes()).get(
                "max_position_embeddings"
            )
        except (OSError, orjson.JSONDecodeError, AttributeError):
            positions = None
        if isinstance(positions, int) and positions > 0:
            limit = min(limit, positions)
        return ValidationOptions(
            base_model=config.base_model,
            counter=TokenCounter.from_encoder(f"{base.name} tokenizer", encode),
            token_limit=limit,
        )

    def artifacts(self, job_id: str) -> dict[str, Path]:
        """The trained outputs there are: ``adapter``, ``model``, ``merged`` folders."""
        folder = self.job_folder(job_id)
        return {
            key: path
            for key, path in (
                ("adapter", folder.adapter_dir),
                ("model", folder.model_dir),
                ("merged", folder.merged_dir),
            )
            if path.is_dir()
        }


def local_from_config(name: str, config: Any) -> LocalBackend:
    """The factory ``make_backend`` calls for ``kind = "local"``: the settings are the extra
    keys of ``[training_backends.NAME]``."""
    extra = getattr(config, "model_extra", None) or {}
    try:
        settings = LocalTrainingConfig.model_validate(extra)
    except ValueError as exc:
        raise InvalidTrainingRequest(
            f"training backend '{name}' is misconfigured: {exc}", param="backend"
        ) from exc
    return LocalBackend(name, settings)
