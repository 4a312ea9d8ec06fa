"""Training: the backend protocol and its registry, the OpenAI backend, and training jobs
(launched idempotently, tracked, resumed after a restart, cancelled), and the ``local``
backend (``local/``): TRL and PEFT on the user's own machine, each job a worker process and a
folder.

Backends are found by kind through the registry (``make_backend``), which knows no backend:
each registers itself under the ``stillroom.training_backends`` entry-point group or through
``register_backend``.
"""

from finetune.training._jobs import (
    JOB_TAG,
    JobDetail,
    cancel_job,
    default_idempotency_key,
    job_detail,
    launch_job,
    list_jobs,
    prepare_files,
    resume_open_jobs,
    sync_job,
    wait_for_job,
)
from finetune.training._openai import (
    OpenAIBackend,
    is_fine_tuning_closed,
)
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
    Hyperparameters,
    InvalidTrainingRequest,
    JobSpec,
    TrainingBackend,
    TrainingConfig,
    TrainingError,
    TrainingJobNotFound,
)
from finetune.training._registry import (
    ENTRY_POINT_GROUP,
    BackendFactory,
    backend_kinds,
    make_backend,
    register_backend,
)
from finetune.training._tracker import (
    JobTracker,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "JOB_TAG",
    "BackendCheckpoint",
    "BackendConfig",
    "BackendEvent",
    "BackendFactory",
    "BackendRefused",
    "BackendStatus",
    "BackendUnavailable",
    "FileProcessingFailed",
    "FileStillProcessing",
    "FineTuningClosed",
    "Hyperparameters",
    "InvalidTrainingRequest",
    "JobDetail",
    "JobSpec",
    "JobTracker",
    "OpenAIBackend",
    "TrainingBackend",
    "TrainingConfig",
    "TrainingError",
    "TrainingJobNotFound",
    "backend_kinds",
    "cancel_job",
    "default_idempotency_key",
    "is_fine_tuning_closed",
    "job_detail",
    "launch_job",
    "list_jobs",
    "make_backend",
    "prepare_files",
    "register_backend",
    "resume_open_jobs",
    "sync_job",
    "wait_for_job",
]
