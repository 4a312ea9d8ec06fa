"""Curation rules as data: conditions on a capture, and what to do when they all hold.

A rule is read from settings and evaluated by ``evaluate``, a pure function over a capture row
(the dict the capture writer inserts, or the same columns read back from the store).

Conflicts: rules run in the order they are configured. The first approve or reject rule that
matches decides the status; later approve or reject rules that also match change nothing.
Tag rules always accumulate, and a tag added by an earlier rule is visible to the ``tags_any`` /
``tags_all`` conditions of the rules after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)

Decision = Literal["approved", "rejected"]
FeedbackValue = Literal["positive", "negative", "neutral", "none"]


def _compile(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None


Regex = Annotated[re.Pattern[str], BeforeValidator(_compile)]


class RuleConditions(BaseModel):
    """All given conditions must hold; an absent one does not narrow. None holds: every capture."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: bool | None = None
    """True: failed (non-2xx, no upstream answer, or an answer that could not be parsed)."""
    refusal: bool | None = None
    """True: some choice of the answer carries a ``refusal``."""
    finish_reason: list[str] | None = None
    """The first choice's finish_reason is one of these."""
    model: list[str] | None = None
    """The requested or the served model is one of these."""
    alias: list[str] | None = None
    tags_any: list[str] | None = None
    """The capture carries at least one of these tags."""
    tags_all: list[str] | None = None
    """The capture carries every one of these tags."""
    metadata: dict[str, str] | None = None
    """Every key is in the request's metadata with exactly this value."""
    feedback: list[FeedbackValue] | None = None
    """The latest end-user feedback is one of these; ``none`` means no feedback yet."""
    min_prompt_tokens: int | None = Field(default=None, ge=0)
    max_prompt_tokens: int | None = Field(default=None, ge=0)
    min_completion_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    min_total_tokens: int | None = Field(default=None, ge=0)
    max_total_tokens: int | None = Field(default=None, ge=0)
    regex: Regex | None = None
    """Searched (``re.search``) in the text of ``regex_in``; inline flags such as ``(?i)`` work."""
    regex_in: Literal["request", "answer", "any"] = "any"
    """Request messages, the answer's choices, or either."""
    stream: bool | None = None
    abandoned: bool | None = None
    """True: the client left before the answer was complete."""

    @property
    def reads_bodies(self) -> bool:
        """Whether evaluating needs the request and response, not just the capture's columns."""
        return self.regex is not None or self.refusal is not None


class RuleConfig(BaseModel):
    """One curation rule: a name, its conditions and an action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    when: RuleConditions = RuleConditions()
    action: Literal["approve", "reject", "tag"]
    tag: str | None = Field(default=None, min_length=1, max_length=100)
    """The tag a ``tag`` rule adds; only for ``tag`` rules."""

    @model_validator(mode="wrap")
    @classmethod
    def _named_errors(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Settings hold a list of rules: an error should say which rule, by name, not by index.
        name = data.get("name") if isinstance(data, Mapping) else getattr(data, "name", None)
        label = f"rule {name!r}" if isinstance(name, str) and name else "a rule without a name"
        try:
            rule = handler(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'rule'}: "
                + error["msg"].removeprefix("Value error, ")
                for error in exc.errors()
            )
            raise ValueError(f"{label}: {problems}") from None
        if rule.action == "tag" and rule.tag is None:
            raise ValueError(f"{label}: tag: a tag rule needs the tag it adds")
        if rule.action != "tag" and rule.tag is not None:
            raise ValueError(f"{label}: tag: only tag rules take a tag, not {rule.action} rules")
        return rule


def _unique_names(rules: list[RuleConfig]) -> list[RuleConfig]:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"rule {rule.name!r} is defined twice: rule names must be unique")
        seen.add(rule.name)
    return rules


RuleList = Annotated[list[RuleConfig], AfterValidator(_unique_names)]
"""The rules of a configuration, in order, with unique names."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the rules decide for one capture."""

    status: Decision | None = None
    """The first matching approve/reject rule's decision; None when none matched."""
    tags: tuple[str, ...] = ()
    """Tags to add, in rule order; only tags the capture does not already carry."""
    status_rule: str | None = None
    """The rule that decided the status."""
    tag_rules: Mapping[str, str] = field(default_factory=dict)
    """For each added tag, the first rule that added it."""
    matched: tuple[str, ...] = ()
    """Every rule whose conditions held, in order."""


def evaluate(rules: Sequence[RuleConfig], row: Mapping[str, Any]) -> Outcome:
    """Run ``rules`` in order over a capture row; see the module docstring for conflicts."""
    if not rules:
        return Outcome()
    view = _RowView(row)
    status: Decision | None = None
    status_rule: str | None = None
    added: dict[str, str] = {}
    matched: list[str] = []
    for rule in rules:
        if not _holds(rule.when, view):
            continue
        matched.append(rule.name)
        if rule.action == "tag":
            assert rule.tag is not None
            if rule.tag not in view.tags:
                view.tags.add(rule.tag)
                added[rule.tag] = rule.name
        elif status is None:
            status = "approved" if rule.action == "approve" else "rejected"
            status_rule = rule.name
    return Outcome(
        status=status,
        tags=tuple(added),
        status_rule=status_rule,
        tag_rules=added,
        matched=tuple(matched),
    )


def rules_read_bodies(rules: Sequence[RuleConfig]) -> bool:
    """Whether any rule needs a capture's request or response to be evaluated."""
    return any(rule.when.reads_bodies for rule in rules)


class _RowView:
    """The facts conditions ask about, computed once per row and only when asked."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = row
        self.tags: set[str] = {t for t in row.get("tags") or () if isinstance(t, str)}
        self._texts: dict[str, str] = {}

    def failed(self) -> bool:
        code = self.row.get("status_code")
        ok = isinstance(code, int) and 200 <= code < 300
        return not ok or self.row.get("error_kind") is not None or self.row.get("error") is not None

    def choices(self) -> list[dict[str, Any]]:
        response = self.row.get("response")
        choices = response.get("choices") if isinstance(response, dict) else None
        return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []

    def refused(self) -> bool:
        return any(
            isinstance(c.get("message"), dict) and bool(c["message"].get("refusal"))
            for c in self.choices()
        )

    def metadata(self) -> Mapping[str, Any]:
        found = self.row.get("metadata_", self.row.get("metadata"))
        return found if isinstance(found, Mapping) else {}

    def text(self, where: str) -> str:
        if where not in self._texts:
            if where == "request":
                request = self.row.get("request")
                messages = request.get("messages") if isinstance(request, dict) else None
                parts = _message_texts(messages if isinstance(messages, list) else [])
            elif where == "answer":
                parts = _message_texts(c.get("message") for c in self.choices())
            else:
                parts = iter((self.text("request"), self.text("answer")))
            self._texts[where] = "\n".join(parts)
        return self._texts[where]


def _message_texts(messages: Any) -> Iterator[str]:
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"]
        if isinstance(message.get("refusal"), str):
            yield message["refusal"]
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                yield function["arguments"]
        legacy = message.get("function_call")
        if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
            yield legacy["arguments"]


def _in_bounds(value: Any, low: int | None, high: int | None) -> bool:
    if low is None and high is None:
        return True
    # A capture without a count (an error, a stream without usage) meets no bound.
    if not isinstance(value, int):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _holds(when: RuleConditions, view: _RowView) -> bool:
    row = view.row
    if when.error is not None and view.failed() != when.error:
        return False
    if when.refusal is not None and view.refused() != when.refusal:
        return False
    if when.finish_reason is not None and row.get("finish_reason") not in when.finish_reason:
        return False
    if when.model is not None and not (
        row.get("requested_model") in when.model or row.get("served_model") in when.model
    ):
        return False
    if when.alias is not None and row.get("alias") not in when.alias:
        return False
    if when.tags_any is not None and view.tags.isdisjoint(when.tags_any):
        return False
    if when.tags_all is not None and not view.tags.issuperset(when.tags_all):
        return False
    if when.metadata is not None:
        metadata = view.metadata()
        if any(metadata.get(key) != value for key, value in when.metadata.items()):
            return False
    if when.feedback is not None and (row.get("feedback") or "none") not in when.feedback:
        return False
    bounds = (
        ("prompt_tokens", when.min_prompt_tokens, when.max_prompt_tokens),
        ("completion_tokens", when.min_completion_tokens, when.max_completion_tokens),
        ("total_tokens", when.min_total_tokens, when.max_total_tokens),
    )
    if not all(_in_bounds(row.get(column), low, high) for column, low, high in bounds):
        return False
    if when.stream is not None and bool(row.get("stream")) != when.stream:
        return False
    if when.abandoned is not None and bool(row.get("abandoned")) != when.abandoned:
        return False
    return when.regex is None or when.regex.search(view.text(when.regex_in)) is not None
