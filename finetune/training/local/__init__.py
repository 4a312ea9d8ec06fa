"""The ``local`` training backend: TRL + PEFT in a worker per job, a process on this machine
or a Ray Job on an existing cluster (``runner = "ray"``).

Importing this package never imports torch, ray or the training libraries; only the worker
(``python -m finetune.training.local.worker JOB_DIR``) imports those it trains with, and the
Ray runner imports ray when it first talks to the cluster.
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
