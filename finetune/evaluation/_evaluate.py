"""The evaluation runner: a model answers a dataset's test split through the upstream, and each
answer is scored against the teacher's.

Calls go straight to the configured upstream with the ``openai`` SDK, never through the proxy,
so evaluation traffic is never captured as training data. One semaphore bounds every call in
flight (the model's and the judge's alike); a 429 waits as long as ``retry-after`` says, other
transient failures back off exponentially, both a bounded number of times. The SDK's own
retries are off, so this is the only retry loop.

Scoring one example lives here; running a whole evaluation (claimed, resumable) in
``finetune.evaluation._run``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import openai
from sqlalchemy import Engine

from finetune.evaluation._checks import run_checks
from finetune.evaluation._judge import CallFailed, Position, judge_pairwise, judge_rubric
from finetune.evaluation._report import InvalidEvaluationRequest
from storage import Evaluation, load_capture_bodies, read_examples_page, session_scope

EvaluationProgress = Callable[[int, int], None]
"""Called with (examples done, examples in all) after each example."""

_ASKED_FIELDS = ("tools", "parallel_tool_calls", "functions")
_ANSWER_FIELDS = ("role", "content", "refusal", "tool_calls", "function_call")


@dataclass(frozen=True, slots=True)
class RunOptions:
    concurrency: int = 4
    """Most upstream calls in flight at once, judge calls included."""
    max_retries: int = 4
    """Retries of one call after a 429, a 5xx or a dropped connection."""
    backoff_seconds: float = 1.0
    """First wait when the upstream names none; doubles each retry."""
    max_wait_seconds: float = 60.0
    """Longest single wait, whatever ``retry-after`` asks."""
    seed: int = 0
    """Fixes the order in which the pairwise judge sees the two answers."""

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 256:
            raise InvalidEvaluationRequest(
                "'concurrency' must be from 1 to 256.", param="concurrency"
            )
        if not 0 <= self.max_retries <= 20:
            raise InvalidEvaluationRequest(
                "'max_retries' must be from 0 to 20.", param="max_retries"
            )

    def as_config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunOptions:
        """The options an evaluation recorded; unknown keys (from other versions) are ignored."""
        return cls(**{k: v for k, v in config.items() if k in cls.__dataclass_fields__})


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a 429 asks for: ``retry-after-ms``, or ``retry-after`` in seconds or as a date."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


class UpstreamCaller:
    """Chat completions through one ``AsyncOpenAI`` client: bounded concurrency and retries.

    ``served_by`` sends a model elsewhere: model -> (the client of the upstream that serves
    it, the name it knows the model by), for a student served by an upstream of its own while
    the judge stays on the default one."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        options: RunOptions,
        *,
        served_by: Mapping[str, tuple[openai.AsyncOpenAI, str]] | None = None,
    ) -> None:
        # The SDK retrying on its own would hide 429s from the bound and double the waits.
        self._client = client.with_options(max_retries=0)
        self._served_by = {
            model: (other.with_options(max_retries=0), name)
            for model, (other, name) in (served_by or {}).items()
        }
        self._options = options
        self._slots = asyncio.Semaphore(options.concurrency)
        self._jitter = random.Random()

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        options = self._options
        client = self._client
        routed = self._served_by.get(body.get("model", ""))
        if routed is not None:
            client, name = routed
            body = {**body, "model": name}
        for attempt in range(options.max_retries + 1):
            async with self._slots:
                try:
                    completion = await client.chat.completions.create(**body)
                    found: dict[str, Any] = completion.model_dump(mode="json", exclude_unset=True)
                    return found
                except openai.RateLimitError as exc:
                    wait = retry_after_seconds(exc.response.headers)
                    problem = f"429 rate limited: {exc.message}"
                except openai.InternalServerError as exc:
                    wait, problem = None, f"{exc.status_code}: {exc.message}"
                except openai.APIConnectionError as exc:
                    wait, problem = None, f"connection failed: {exc}"
                except openai.APIStatusError as exc:
                    raise CallFailed(f"{exc.status_code}: {exc.message}") from None
                except openai.APIError as exc:
                    # An answer the SDK cannot read: retrying would read the same.
                    raise CallFailed(f"unreadable answer: {exc.message}") from None
            if attempt == options.max_retries:
                break
            if wait is None:
                wait = options.backoff_seconds * 2**attempt * (0.5 + self._jitter.random() / 2)
            # Waiting outside the semaphore: a slot is for a call in flight, not a pause.
            await asyncio.sleep(min(wait, options.max_wait_seconds))
        raise CallFailed(f"{problem} (gave up after {options.max_retries + 1} attempts)")


@dataclass(frozen=True, slots=True)
class TestExample:
    capture_id: str
    position: int
    prompt_hash: str
    request: dict[str, Any]
    """What the model is asked: messages without the final answer, tools, response_format."""
    teacher: dict[str, Any]


def _request_of(example: Mapping[str, Any], captured: Any) -> tuple[dict[str, Any], Any]:
    messages = [
        {key: value for key, value in message.items() if key != "weight"}
        for message in example["messages"]
    ]
    request: dict[str, Any] = {"messages": messages[:-1]}
    for key in _ASKED_FIELDS:
        if key in example:
            request[key] = example[key]
    # The export format has no response_format: the capture's own request still knows it.
    if isinstance(captured, dict) and isinstance(captured.get("response_format"), dict):
        request["response_format"] = captured["response_format"]
    request.update(_answer_limit(captured))
    return request, messages[-1]


def _answer_limit(captured: Any) -> dict[str, int]:
    """The client's limit on the answer's length, as it asked the teacher: the model under
    evaluation answers under the same limit (a student that never ends its answer would
    otherwise write until its server's own limit, thousands of tokens)."""
    if not isinstance(captured, dict):
        return {}
    found = {
        key: value
        for key in ("max_tokens", "max_completion_tokens")
        if isinstance(value := captured.get(key), int) and not isinstance(value, bool)
    }
    responses_limit = captured.get("max_output_tokens")  # a Responses API capture
    if not found and isinstance(responses_limit, int) and not isinstance(responses_limit, bool):
        found["max_completion_tokens"] = responses_limit
    return found


def load_test_split(engine: Engine, dataset_id: str) -> list[TestExample]:
    found: list[TestExample] = []
    after = -1
    while True:
        with session_scope(engine) as session:
            page = read_examples_page(dataset_id, "test", session=session, after_position=after)
            bodies = load_capture_bodies([row.capture_id for row in page], session=session)
        if not page:
            return found
        for row in page:
            captured = bodies.get(row.capture_id, (None, None))[0]
            request, teacher = _request_of(row.example, captured)
            found.append(
                TestExample(row.capture_id, row.position, row.prompt_hash, request, teacher)
            )
        after = page[-1].position


def _answer_of(completion: Mapping[str, Any]) -> dict[str, Any] | None:
    choices = completion.get("choices") or []
    message = choices[0].get("message") if choices else None
    if not isinstance(message, dict):
        return None
    return {key: message[key] for key in _ANSWER_FIELDS if message.get(key) is not None}


async def score_example(
    caller: UpstreamCaller,
    evaluation: Evaluation,
    example: TestExample,
    position: Position,
) -> dict[str, Any]:
    """Ask the model, check its answer, judge it: one result row."""
    row: dict[str, Any] = {
        "evaluation_id": evaluation.id,
        "position": example.position,
        "capture_id": example.capture_id,
        "prompt_hash": example.prompt_hash,
        "teacher_answer": example.teacher,
        "candidate_answer": None,
        "error": None,
        "judge_error": None,
    }
    started = time.perf_counter()
    try:
        completion = await caller.complete({**example.request, "model": evaluation.model})
    except CallFailed as exc:
        row.update(error=str(exc), checks=run_checks(example.request, example.teacher, None))
        return row
    row["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    usage = completion.get("usage") or {}
    row["prompt_tokens"] = usage.get("prompt_tokens")
    row["completion_tokens"] = usage.get("completion_tokens")
    answer = _answer_of(completion)
    row["candidate_answer"] = answer
    row["checks"] = run_checks(example.request, example.teacher, answer)
    prompt = example.request["messages"]
    rubric, pairwise = await asyncio.gather(
        judge_rubric(caller.complete, evaluation.judge_model, prompt, example.teacher, answer),
        judge_pairwise(
            caller.complete, evaluation.judge_model, prompt, example.teacher, answer, position
        ),
    )
    row.update(
        rubric_score=rubric.score,
        rubric_reason=rubric.reason,
        pairwise_outcome=pairwise.outcome,
        pairwise_position=pairwise.candidate_position,
        pairwise_reason=pairwise.reason,
    )
    errors = [e for e in (rubric.error, pairwise.error) if e]
    row["judge_error"] = "; ".join(errors) or None
    return row
