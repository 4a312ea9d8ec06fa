"""The validator that gates every upload of chat fine-tuning data.

It reads a JSONL file once, line by line, in constant memory apart from one small integer per
example, and returns a ``ValidationReport``; it never prints. Blocking errors (malformed JSON,
format defects, too few examples, a file too large, the wrong kind of file altogether) are kept
apart from warnings (OpenAI trains anyway, perhaps not as meant). ``passed`` means no error.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Engine

from finetune.costs._prices import (
    DEFAULT_BASE_MODEL,
    estimate_cost,
    price_table,
    token_limit_for,
)
from finetune.datasets._export import Redact, open_export
from finetune.datasets._tokens import TokenCounter, counter_for
from finetune.datasets._validate_checks import check_example
from finetune.datasets._validate_report import (
    FileFormat,
    Issue,
    IssueLog,
    ValidationReport,
    distribution,
)

# OpenAI's Files API: "Individual files can be up to 512 MB" (API reference, "Upload file").
# Read as 512 * 10^6 bytes, the smaller reading, so a file we pass is never refused for size.
MAX_FILE_BYTES = 512_000_000
# OpenAI's fine-tuning guide: "you are required to provide at least 10 examples"; "we typically
# see clear improvements from fine-tuning on 50 to 100 training examples".
MIN_EXAMPLES = 10
RECOMMENDED_EXAMPLES = 50
_LINES_LISTED_PER_FORMAT = 5
_OVER_LIMIT_LISTED = 1_000

_FOREIGN_FORMATS: Mapping[FileFormat, str] = {
    FileFormat.PROMPT_COMPLETION: (
        "legacy prompt/completion data ('prompt' and 'completion' keys), the format of the "
        "retired completions fine-tuning of babbage-002 and davinci-002; chat models need one "
        '{"messages": [...]} object per line, ending with the assistant\'s answer'
    ),
    FileFormat.BATCH_API_INPUT: (
        "Batch API input ('custom_id', 'method', 'url', 'body'): requests for /v1/batches, not "
        "training examples; they hold no assistant answer to learn from"
    ),
    FileFormat.PREFERENCE: (
        "preference (DPO) data ('input', 'preferred_output', 'non_preferred_output'), which "
        "trains with method 'dpo', not the supervised chat format"
    ),
}


@dataclass(frozen=True)
class ValidationOptions:
    base_model: str = DEFAULT_BASE_MODEL
    """Decides the encoding, the per-example token limit and the price."""
    epochs: int | None = None
    """None estimates the cost with OpenAI's default (``n_epochs="auto"``) heuristic."""
    prices: Mapping[str, float] | None = None
    """$ per 1M training tokens by base model, over the built-in table."""
    min_examples: int = MIN_EXAMPLES
    recommended_examples: int = RECOMMENDED_EXAMPLES
    max_file_bytes: int = MAX_FILE_BYTES
    listed_per_code: int = 50
    """Issues of one code listed with their lines; all are counted."""
    counter: TokenCounter | None = None
    """Counts tokens with another tokenizer (a self-hosted base model's); None: OpenAI's
    encoding of ``base_model``."""
    token_limit: int | None = None
    """The per-example limit of that model; None: OpenAI's limit of ``base_model``."""


def _foreign_format(example: dict[str, Any]) -> FileFormat | None:
    if "messages" in example:
        return None
    if "prompt" in example or "completion" in example:
        return FileFormat.PROMPT_COMPLETION
    if "custom_id" in example and ("body" in example or "url" in example):
        return FileFormat.BATCH_API_INPUT
    if "preferred_output" in example or "non_preferred_output" in example:
        return FileFormat.PREFERENCE
    return None


class _Validation:
    def __init__(self, options: ValidationOptions) -> None:
        self.options = options
        self.counter = options.counter or counter_for(options.base_model)
        self.token_limit = options.token_limit or token_limit_for(options.base_model)
        self.log = IssueLog(options.listed_per_code)
        self.bytes = 0
        self.lines = 0
        self.examples = 0
        self.tokens = array("q")
        self.assistant_tokens = array("q")
        self.messages = array("q")
        self.over_limit: list[int] = []
        self.foreign: dict[FileFormat, list[int]] = {}
        self.foreign_counts: Counter[FileFormat] = Counter()

    def feed(self, raw: bytes | str) -> None:
        self.lines += 1
        self.log.line = line = self.lines
        data = raw.encode() if isinstance(raw, str) else raw
        self.bytes += len(data) + (0 if data.endswith(b"\n") else 1)
        if not data.strip():
            self.log.report("warning", "blank_line", "blank line")
            return
        try:
            example = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            where = f"column {exc.colno}" if exc.colno else "its start"
            self.log.report("error", "invalid_json", f"not valid JSON at {where}: {exc.msg}")
            return
        if not isinstance(example, dict):
            kind = type(example).__name__
            self.log.report("error", "data_type", f"the line is a JSON {kind}, not an object")
            return
        foreign = _foreign_format(example)
        if foreign is not None:
            self.foreign_counts[foreign] += 1
            listed = self.foreign.setdefault(foreign, [])
            if len(listed) < _LINES_LISTED_PER_FORMAT:
                listed.append(line)
            return
        messages = check_example(example, self.log.report)
        if messages is None:
            return
        self.examples += 1
        total, assistant = self.counter.example(
            messages, (example.get("tools"), example.get("functions"))
        )
        self.tokens.append(total)
        self.assistant_tokens.append(assistant)
        self.messages.append(len(messages))
        if total > self.token_limit:
            if len(self.over_limit) < _OVER_LIMIT_LISTED:
                self.over_limit.append(line)
            self.log.report(
                "warning",
                "over_token_limit",
                f"{total:,} tokens, over the {self.token_limit:,}-token limit of "
                f"{self.options.base_model}: training truncates it",
            )

    def _file_checks(self) -> FileFormat:
        log, options = self.log, self.options
        log.line = None
        for kind, lines in self.foreign.items():
            count = self.foreign_counts[kind]
            shown = ", ".join(map(str, lines)) + (" …" if count > len(lines) else "")
            log.add(
                "error",
                "wrong_format",
                f"{count} line(s) (line {shown}) look like {_FOREIGN_FORMATS[kind]}",
                lines[0],
            )
        if self.bytes > options.max_file_bytes:
            log.report(
                "error",
                "file_too_large",
                f"{self.bytes:,} bytes; OpenAI takes files up to {options.max_file_bytes:,}",
            )
        if self.lines == 0:
            log.report("error", "empty_file", "the file is empty")
            return FileFormat.EMPTY
        if self.examples == 0:
            if not log.has_errors():
                log.report("error", "too_few_examples", "no chat example")
        elif self.examples < options.min_examples:
            log.report(
                "error",
                "too_few_examples",
                f"{self.examples} example(s); fine-tuning needs at least {options.min_examples}",
            )
        elif self.examples < options.recommended_examples:
            log.report(
                "warning",
                "few_examples",
                f"{self.examples} examples; OpenAI sees clear gains from "
                f"{options.recommended_examples} to 100",
            )
        kinds: Counter[FileFormat] = Counter({FileFormat.CHAT: self.examples})
        kinds.update(self.foreign_counts)
        kind, count = kinds.most_common(1)[0]
        return kind if count else FileFormat.UNKNOWN

    def report(self) -> ValidationReport:
        kind = self._file_checks()
        options, log = self.options, self.log
        cost = estimate_cost(
            base_model=options.base_model,
            example_tokens=self.tokens,
            examples=self.examples,
            token_limit=self.token_limit,
            prices=price_table(options.prices),
            epochs=options.epochs,
        )
        return ValidationReport(
            passed=not log.has_errors(),
            format=kind,
            base_model=options.base_model,
            encoding=self.counter.encoding_name,
            token_limit=self.token_limit,
            bytes=self.bytes,
            lines=self.lines,
            examples=self.examples,
            errors=_in_file_order(log.errors),
            warnings=_in_file_order(log.warnings),
            error_counts=dict(log.counts["error"]),
            warning_counts=dict(log.counts["warning"]),
            issues_left_off=log.left_off,
            total_tokens=sum(self.tokens),
            tokens_per_example=distribution(self.tokens),
            assistant_tokens_per_example=distribution(self.assistant_tokens),
            messages_per_example=distribution(self.messages),
            over_token_limit=self.over_limit,
            cost=cost,
        )


def _in_file_order(issues: list[Issue]) -> list[Issue]:
    """The file's own issues first, then by line."""
    return sorted(issues, key=lambda issue: (issue.line is not None, issue.line or 0))


def validate_jsonl(
    lines: Iterable[bytes | str], options: ValidationOptions | None = None
) -> ValidationReport:
    """Validate chat fine-tuning JSONL given as its lines (with or without their newlines)."""
    validation = _Validation(options or ValidationOptions())
    for line in lines:
        validation.feed(line)
    return validation.report()


def _read_with_progress(
    handle: IO[bytes], progress: Callable[[int], None] | None
) -> Iterator[bytes]:
    pending = 0
    for line in handle:
        yield line
        pending += len(line)
        if progress is not None and pending >= 1 << 20:
            progress(pending)
            pending = 0
    if progress is not None and pending:
        progress(pending)


def validate_file(
    path: Path,
    options: ValidationOptions | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Validate a JSONL file on disk; ``progress`` hears how many more bytes were read."""
    with path.open("rb") as handle:
        return validate_jsonl(_read_with_progress(handle, progress), options)


def split_lines(body: bytes) -> Iterator[bytes]:
    """The lines of a JSONL body already in memory, one at a time (never a second full copy)."""
    start = 0
    while start < len(body):
        end = body.find(b"\n", start)
        if end == -1:
            yield body[start:]
            return
        yield body[start : end + 1]
        start = end + 1


def validate_dataset(
    engine: Engine,
    dataset_id: str,
    *,
    split: str = "train",
    options: ValidationOptions | None = None,
    redact: Redact | None = None,
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Validate the very lines an upload of this dataset split would send (exported, redacted
    as configured); ``progress`` hears how many more examples were read. An unknown dataset or
    split raises the dataset services' errors before anything is read."""
    _, pages = open_export(engine, dataset_id, split=split, fmt="sft", redact=redact)

    def lines() -> Iterator[bytes]:
        for page in pages:
            yield from page.lines
            if progress is not None:
                progress(page.examples)

    return validate_jsonl(lines(), options)
