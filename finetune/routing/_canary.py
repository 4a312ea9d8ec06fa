"""The canary's policy and its pure judgement: wait, go full, or roll back.

While a canary runs, the student and the teacher serve the same alias in the same window, so
their online signals are compared with each other rather than with a fixed bar: a bad hour
upstream raises both error rates and is no reason to roll back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storage import ServedSignals

CanaryAction = Literal["wait", "full", "roll_back"]


class CanaryPolicy(BaseModel):
    """How a promotion moves from canary to full, and when it is rolled back instead."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    canary_percent: float = Field(default=10.0, ge=0, lt=100)
    """Share of the alias's traffic the student gets first; 0 goes straight to full."""
    full_after_seconds: float = Field(default=3600.0, gt=0)
    """The canary goes full after this long without a regression..."""
    full_after_requests: int = Field(default=200, ge=1)
    """...or once the student has served this many requests (shadow copies not counted),
    whichever comes first."""
    min_requests_to_judge: int = Field(default=20, ge=1)
    """Below this many student requests no regression is declared: a few unlucky answers
    prove nothing."""
    max_error_rate_increase: float = Field(default=0.02, ge=0, le=1)
    """Largest allowed excess of the student's error rate over the teacher's in the same
    window, absolute (0.02 = two percentage points)."""
    max_negative_feedback_increase: float = Field(default=0.05, ge=0, le=1)
    """Largest allowed excess of the student's share of negative feedback over the
    teacher's, absolute."""
    shadow_rate_after: float = Field(default=0.05, ge=0, le=1)
    """Share of the student's requests also sent to the teacher in the background once the
    student serves, so the loop keeps learning and the student stays watched."""

    @model_validator(mode="after")
    def _judged_before_full(self) -> Self:
        if self.min_requests_to_judge > self.full_after_requests:
            raise ValueError(
                "min_requests_to_judge must not exceed full_after_requests: a canary would "
                "go full before it could be judged"
            )
        return self


def side_signals(model: str, served: ServedSignals | None) -> dict[str, Any]:
    """One side's figures as stored on the promotion and shown by the API."""
    served = served or ServedSignals()
    requests = served.requests
    return {
        "model": model,
        "requests": requests,
        "errors": served.errors,
        "negative_feedback": served.negative_feedback,
        "error_rate": round(served.errors / requests, 4) if requests else None,
        "negative_rate": round(served.negative_feedback / requests, 4) if requests else None,
    }


def canary_signals(
    served: Mapping[str, ServedSignals], *, student: str, teacher: str
) -> dict[str, dict[str, Any]]:
    return {
        "student": side_signals(student, served.get(student)),
        "teacher": side_signals(teacher, served.get(teacher)),
    }


@dataclass(frozen=True, slots=True)
class CanaryVerdict:
    action: CanaryAction
    reason: str
    """Plain words with the figures that decided."""


def _rate(side: Mapping[str, Any], key: str) -> float:
    value = side.get(key)
    return float(value) if value is not None else 0.0


def _points(value: float) -> str:
    return f"{100 * value:.1f}%"


def _regression(signals: Mapping[str, Mapping[str, Any]], policy: CanaryPolicy) -> str | None:
    student, teacher = signals["student"], signals["teacher"]
    comparisons = (
        ("error rate", "error_rate", "errors", policy.max_error_rate_increase),
        (
            "negative feedback",
            "negative_rate",
            "negative_feedback",
            policy.max_negative_feedback_increase,
        ),
    )
    for label, rate_key, count_key, allowed in comparisons:
        ours, theirs = _rate(student, rate_key), _rate(teacher, rate_key)
        if ours > theirs + allowed:
            return (
                f"student {label} {_points(ours)} ({student[count_key]} of "
                f"{student['requests']}) against the teacher's {_points(theirs)} "
                f"({teacher[count_key]} of {teacher['requests']}) in the same window; "
                f"at most {_points(allowed)} more is allowed"
            )
    return None


def judge_canary(
    signals: Mapping[str, Mapping[str, Any]],
    policy: CanaryPolicy,
    *,
    started_at: datetime,
    now: datetime,
) -> CanaryVerdict:
    """Roll back on a regression once enough student requests were seen; else go full when
    the time or the sample is reached; else wait."""
    requests = int(signals["student"]["requests"])
    elapsed = (now - started_at).total_seconds()
    if requests >= policy.min_requests_to_judge:
        regression = _regression(signals, policy)
        if regression is not None:
            return CanaryVerdict("roll_back", f"canary regression: {regression}")
    student, teacher = signals["student"], signals["teacher"]
    summary = (
        f"student error rate {_points(_rate(student, 'error_rate'))}, negative feedback "
        f"{_points(_rate(student, 'negative_rate'))}; teacher "
        f"{_points(_rate(teacher, 'error_rate'))} and {_points(_rate(teacher, 'negative_rate'))}"
    )
    if elapsed >= policy.full_after_seconds:
        return CanaryVerdict(
            "full",
            f"canary ran {elapsed:.0f} s (full after {policy.full_after_seconds:.0f} s) with "
            f"{requests} student requests and no regression: {summary}",
        )
    if requests >= policy.full_after_requests:
        return CanaryVerdict(
            "full",
            f"canary reached {requests} student requests (full after "
            f"{policy.full_after_requests}) with no regression: {summary}",
        )
    return CanaryVerdict(
        "wait",
        f"{requests} of {policy.full_after_requests} student requests, {elapsed:.0f} of "
        f"{policy.full_after_seconds:.0f} s",
    )
