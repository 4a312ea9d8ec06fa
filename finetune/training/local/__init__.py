"""The ``local`` training backend: TRL + PEFT in a worker process per job, on this machine.

Importing this package never imports torch or the training libraries; only the worker
(``python -m finetune.training.local.worker JOB_DIR``) does.
"""

from finetune.training.local._backend import (
    LocalBackend,
    local_from_config,
    model_name,
    resolve_base_model,
)
from finetune.training.local._config import BASE_LEARNING_RATES, LocalTrainingConfig
from finetune.training.local._encode import IGNORE, encode_sft
from finetune.training.local._folder import JobFolder

__all__ = [
    "BASE_LEARNING_RATES",
    "IGNORE",
    "JobFolder",
    "LocalBackend",
    "LocalTrainingConfig",
    "encode_sft",
    "local_from_config",
    "model_name",
    "resolve_base_model",
]
