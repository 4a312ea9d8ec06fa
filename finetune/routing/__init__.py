"""Routing: which model serves an alias, and making sure the upstream behind it can serve it."""

from finetune.routing._serving import (
    ServedUpstream,
    ServingError,
    StudentLocator,
    StudentNotFound,
    StudentNotServed,
    StudentServing,
    StudentWeights,
    UpstreamKind,
    job_folder_weights,
    local_job_id,
    local_student_locator,
    students_in_use,
)

__all__ = [
    "ServedUpstream",
    "ServingError",
    "StudentLocator",
    "StudentNotFound",
    "StudentNotServed",
    "StudentServing",
    "StudentWeights",
    "UpstreamKind",
    "job_folder_weights",
    "local_job_id",
    "local_student_locator",
    "students_in_use",
]
