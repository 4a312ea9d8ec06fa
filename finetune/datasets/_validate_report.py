"""The validator's report: blocking errors apart from warnings, each with its line and a code,
plus counts, token distributions and the cost estimate. JSON over HTTP, a table in the CLI."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from finetune.costs._prices import CostEstimate

Severity = Literal["error", "warning"]


class FileFormat(StrEnum):
    """What the file looks like, judged line by line."""

    CHAT = "chat"
    PROMPT_COMPLETION = "prompt_completion"
    BATCH_API_INPUT = "batch_api_input"
    PREFERENCE = "preference"
    EMPTY = "empty"
    UNKNOWN = "unknown"


class Issue(BaseModel):
    code: str
    """Stable name of the check, e.g. ``missing_system_message`` or ``double_encoded_arguments``."""
    message: str
    line: int | None = None
    """1-based line of the JSONL file; None when the issue is the file's as a whole."""


class Distribution(BaseModel):
    count: int
    total: int
    min: int
    max: int
    mean: float
    p50: float
    p95: float


def _quantile(ordered: Sequence[int], q: float) -> float:
    # Linear interpolation between closest ranks, as numpy's default quantile does.
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(values: Sequence[int]) -> Distribution | None:
    if not values:
        return None
    ordered = sorted(values)
    total = sum(ordered)
    return Distribution(
        count=len(ordered),
        total=total,
        min=ordered[0],
        max=ordered[-1],
        mean=round(total / len(ordered), 3),
        p50=_quantile(ordered, 0.5),
        p95=round(_quantile(ordered, 0.95), 3),
    )


class ValidationReport(BaseModel):
    """The verdict on one chat fine-tuning JSONL file; ``passed`` means no blocking error."""

    passed: bool
    format: FileFormat
    base_model: str
    encoding: str
    token_limit: int
    """Per-example token limit of the base model; longer examples are truncated in training."""
    bytes: int
    lines: int
    examples: int
    """Lines holding a chat example (a ``messages`` list), with or without defects."""
    errors: list[Issue]
    """Blocking: the file must not be uploaded while any remains."""
    warnings: list[Issue]
    error_counts: dict[str, int]
    """Every error by code, including those left off the list."""
    warning_counts: dict[str, int]
    issues_left_off: int
    """Issues counted but not listed: each code lists its first few lines only."""
    total_tokens: int
    tokens_per_example: Distribution | None
    assistant_tokens_per_example: Distribution | None
    messages_per_example: Distribution | None
    over_token_limit: list[int]
    """Lines of the examples longer than ``token_limit`` (the first 1,000)."""
    cost: CostEstimate


class IssueLog:
    """Collects issues while streaming: every one is counted, the first few of a code listed."""

    def __init__(self, listed_per_code: int) -> None:
        self._listed_per_code = listed_per_code
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        self.counts: dict[Severity, Counter[str]] = {"error": Counter(), "warning": Counter()}
        self.left_off = 0
        self.line: int | None = None
        """The line being checked: ``report`` files its issues under it."""

    def report(self, severity: Severity, code: str, message: str) -> None:
        self.add(severity, code, message, self.line)

    def add(self, severity: Severity, code: str, message: str, line: int | None = None) -> None:
        counts = self.counts[severity]
        counts[code] += 1
        if counts[code] > self._listed_per_code:
            self.left_off += 1
            return
        issue = Issue(code=code, message=message, line=line)
        (self.errors if severity == "error" else self.warnings).append(issue)

    def has_errors(self) -> bool:
        return bool(self.counts["error"])
