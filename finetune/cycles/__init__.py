"""Cycles: the distillation loop as a persisted state machine (collecting, exporting, training,
evaluating, promoting), and the runner that moves cycles on from one replica.
"""

from finetune.cycles._records import (
    CycleConflict,
    CycleError,
    CycleNotFound,
    CyclePolicy,
    InvalidCycleRequest,
    cancel_cycle,
    cycles,
    dataset_name,
    require_cycle,
    start_cycle,
)
from finetune.cycles._runner import (
    CycleRunner,
    RoundReport,
    due_trigger,
)
from finetune.cycles._steps import (
    CycleContext,
    advance_cycle,
    teacher_filter,
)

__all__ = [
    "CycleConflict",
    "CycleContext",
    "CycleError",
    "CycleNotFound",
    "CyclePolicy",
    "CycleRunner",
    "InvalidCycleRequest",
    "RoundReport",
    "advance_cycle",
    "cancel_cycle",
    "cycles",
    "dataset_name",
    "due_trigger",
    "require_cycle",
    "start_cycle",
    "teacher_filter",
]
