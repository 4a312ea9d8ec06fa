"""The settings of a ``local`` training backend: ``[training_backends.NAME]`` with
``kind = "local"``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BASE_LEARNING_RATES: dict[str, float] = {
    "supervised:lora": 2e-4,
    "supervised:full": 1e-5,
    "dpo:lora": 5e-5,
    "dpo:full": 5e-6,
}
"""``learning_rate_multiplier`` times this is the learning rate, by ``method:tuning``."""

DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 4
DEFAULT_BETA = 0.1


class LocalTrainingConfig(BaseModel):
    """Every key has a default; ``root`` is where job folders live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Path("training-jobs")
    """Job folders (``<root>/<job id>/``) and uploaded files (``<root>/files/``)."""
    python: str | None = None
    """The interpreter that runs the worker (one with the ``train`` extra); None: this one (with
    ``runner = "ray"``: ``python`` on the node's PATH)."""
    allow_downloads: bool = False
    """False sets ``HF_HUB_OFFLINE=1`` for the worker: the base model must be a local folder or
    already in the Hugging Face cache."""
    hub_kernels: bool = False
    """Let transformers replace layers with kernels from the Hugging Face Hub, fetched and run at
    training time (needs ``allow_downloads`` or the kernels already cached). False: the model's
    own layers, the same on every machine and with no code from outside."""
    tuning: Literal["lora", "full"] = "lora"
    lora_rank: int = Field(default=16, ge=1, le=1024)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"
    max_length: int = Field(default=2048, ge=16)
    """Tokens per example; longer examples are truncated."""
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """auto: bf16 on a GPU that has it, else fp32."""
    gradient_checkpointing: bool | None = None
    """None: on with a GPU, off on a CPU (where it only slows)."""
    seed: int = 42
    """Used when the job names none."""
    logging_steps: int = Field(default=10, ge=1)
    save_steps: int | None = Field(default=None, ge=1)
    """A checkpoint every this many steps; None: one per epoch."""
    save_total_limit: int = Field(default=3, ge=1)
    merge: bool = False
    """Also write ``merged/``: the base with the adapter merged in (for servers without LoRA)."""
    resume_attempts: int = Field(default=2, ge=0)
    """A worker that ended without a final status (killed, out of memory) is started again this
    many times, resuming from its last checkpoint; with none saved yet, the job fails."""
    cancel_grace_seconds: float = Field(default=5.0, ge=0)
    """After SIGTERM, how long the worker has before SIGKILL."""
    learning_rates: dict[str, float] = Field(default_factory=dict)
    """Overrides of ``BASE_LEARNING_RATES``."""
    num_gpus: int = Field(default=0, ge=0)
    """GPUs for one job. More than one starts the worker under ``accelerate launch``, one
    process per GPU (data parallel); with ``runner = "ray"`` they are reserved for the job on
    one node. 0: the process runner trains on whatever GPU is visible, a Ray job on none."""

    runner: Literal["process", "ray"] = "process"
    """Where the worker runs: a process on this machine, or a Ray Job on an existing cluster."""
    address: str | None = None
    """``ray``: the cluster's dashboard (Jobs API), e.g. ``http://head:8265``."""
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    """``ray``: how long one call to the Jobs API may wait for the dashboard's answer. A
    dashboard that takes the connection and never answers is then a cluster that cannot be
    reached (a launch or cancel unavailable, a job left as last seen), not a thread stuck."""
    cluster_root: str | None = None
    """``ray`` with a shared file system: ``root`` as the Ray nodes see it, when mounted
    elsewhere there; None: the same path."""
    artifact_uri: str | None = None
    """``ray`` without a shared file system: an fsspec URL (``s3://bucket/prefix``,
    ``gs://…``, ``file:///mnt/…``) the worker writes its files to and the backend copies back
    from; the job's spec and data travel in the Ray job's ``working_dir``."""
    num_cpus: float = Field(default=1, ge=0)
    """``ray``: CPUs reserved for the job."""
    resources: dict[str, float] = Field(default_factory=dict)
    """``ray``: custom resources reserved for the job (e.g. ``{"accelerator_type:A100" =
    0.001}``)."""
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    """``ray``: more of the job's runtime environment (``pip``, ``env_vars``, ``container``…)."""
    ship_code: bool = True
    """``ray``: send this server's ``finetune`` and ``storage`` packages with each job
    (``py_modules``), so the nodes need only the libraries of the ``train`` extra."""

    @model_validator(mode="after")
    def _ray_needs_an_address(self) -> LocalTrainingConfig:
        if self.runner == "ray" and not self.address:
            raise ValueError('runner = "ray" needs address, the Ray dashboard (http://host:8265)')
        return self

    def base_learning_rate(self, method: str) -> float:
        key = f"{method}:{self.tuning}"
        return self.learning_rates.get(key, BASE_LEARNING_RATES[key])
