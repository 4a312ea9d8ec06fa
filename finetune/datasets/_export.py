"""Reading a frozen dataset back out: chat fine-tuning (SFT) and preference (DPO) JSONL, and
the difference between two datasets.

Preference pairs are frozen beside each example when the dataset is built (under
``PREFERENCE_KEY``, never part of an SFT line), so exporting an old dataset again gives the
same pairs whatever feedback or edits came later. Exports read one page per short session and
yield as they go: a download never holds the file in memory, nor a connection between pages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine, Row
from sqlmodel import Session

from finetune.datasets._input import SPLITS, check_export, not_found
from finetune.datasets._reading import Candidate
from finetune.datasets._threading import answer_message, clean_message, normalise_turn
from storage import Dataset, answers_for_prompts, get_dataset, read_examples_page, session_scope

PREFERENCE_KEY = "_preference"
"""Where a stored example keeps its frozen preference pair; stripped from SFT lines."""

Redact = Callable[[Any], Any]
"""Applied to every record just before it is written (e.g. ``Redactor.redact_value``)."""

_Built = tuple[Candidate, dict[str, Any], dict[str, Any], dict[str, Any]]


def _pair(source: str, preferred: Any, non_preferred: Any) -> dict[str, Any] | None:
    if normalise_turn(preferred) == normalise_turn(non_preferred):
        return None
    return {
        "source": source,
        "preferred_output": [preferred],
        "non_preferred_output": [non_preferred],
    }


def freeze_preferences(
    built: list[_Built],
    edits: Mapping[str, dict[str, Any]],
    corrections: Mapping[str, dict[str, Any]],
    contested: Collection[str],
    *,
    session: Session,
) -> int:
    """Attach a preference pair to each example that has one; returns how many did.

    An edit beats the original answer; so does a corrected answer sent as feedback. Otherwise,
    two captures of a ``contested`` prompt, one with positive and one with negative feedback,
    make a pair.
    """
    pairs: dict[int, dict[str, Any] | None] = {}
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for row, _, answer, example in built:
        if row.id in edits:
            pairs[id(example)] = _pair("edit", example["messages"][-1], answer)
        elif row.id in corrections:
            corrected = clean_message({**corrections[row.id], "role": "assistant"})
            pairs[id(example)] = _pair("feedback_correction", corrected, answer)
        elif row.prompt_hash is not None and row.prompt_hash in contested:
            by_prompt.setdefault(row.prompt_hash, []).append(example)
    found = answers_for_prompts(
        by_prompt,
        session=session,
        feedback=("positive", "negative"),
        include_rejected=True,
        answers_only=True,
    )
    # Oldest first, so the last one seen of each kind is the latest.
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for capture in found:
        given, _ = answer_message(capture.response)
        if given is not None:
            latest[(capture.prompt_hash, capture.feedback)] = given
    for prompt, examples in by_prompt.items():
        good, bad = latest.get((prompt, "positive")), latest.get((prompt, "negative"))
        if good is not None and bad is not None:
            for example in examples:
                pairs[id(example)] = _pair("feedback_pair", good, bad)
    count = 0
    for _, _, _, example in built:
        pair = pairs.get(id(example))
        if pair is not None:
            example[PREFERENCE_KEY] = pair
            count += 1
    return count


def sft_example(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI chat fine-tuning line of a stored example."""
    return {key: value for key, value in stored.items() if key != PREFERENCE_KEY}


def dpo_record(stored: Mapping[str, Any]) -> dict[str, Any] | None:
    """OpenAI's preference line (``input``, ``preferred_output``, ``non_preferred_output``)
    of a stored example, or None when it has no pair."""
    pair = stored.get(PREFERENCE_KEY)
    if not isinstance(pair, dict):
        return None
    messages = [
        {k: v for k, v in message.items() if k != "weight"} for message in stored["messages"][:-1]
    ]
    prompt: dict[str, Any] = {"messages": messages}
    for key in ("tools", "parallel_tool_calls"):
        if key in stored:
            prompt[key] = stored[key]
    return {
        "input": prompt,
        "preferred_output": pair["preferred_output"],
        "non_preferred_output": pair["non_preferred_output"],
    }


def require_dataset(engine: Engine, dataset_id: str) -> Dataset:
    with session_scope(engine) as session:
        dataset = get_dataset(dataset_id, session=session)
    if dataset is None:
        raise not_found(dataset_id)
    return dataset


def _pages(engine: Engine, dataset_id: str, split: str, page_size: int) -> Iterator[list[Row[Any]]]:
    for side in SPLITS if split == "all" else (split,):
        after = -1
        while True:
            with session_scope(engine) as session:
                page = read_examples_page(
                    dataset_id, side, session=session, after_position=after, limit=page_size
                )
            if not page:
                break
            yield page
            after = page[-1].position


@dataclass(frozen=True, slots=True)
class ExportPage:
    examples: int
    """How many stored examples this page covered (DPO writes a line only for pairs)."""
    lines: list[bytes]


def open_export(
    engine: Engine,
    dataset_id: str,
    *,
    split: str = "all",
    fmt: str = "sft",
    redact: Redact | None = None,
    page_size: int = 1000,
) -> tuple[Dataset, Iterator[ExportPage]]:
    """Check the request now (unknown dataset, split or format raise here, before any byte is
    sent), and return the dataset with its pages of JSONL lines, read as they are consumed."""
    check_export(split, fmt)
    dataset = require_dataset(engine, dataset_id)

    def pages() -> Iterator[ExportPage]:
        for rows in _pages(engine, dataset_id, split, page_size):
            lines = []
            for row in rows:
                record = sft_example(row.example) if fmt == "sft" else dpo_record(row.example)
                if record is None:
                    continue
                if redact is not None:
                    record = redact(record)
                lines.append(orjson.dumps(record) + b"\n")
            yield ExportPage(len(rows), lines)

    return dataset, pages()


def export_lines(
    engine: Engine,
    dataset_id: str,
    *,
    split: str = "all",
    fmt: str = "sft",
    redact: Redact | None = None,
) -> Iterator[bytes]:
    """The JSONL lines of one split (or all) of a dataset, each ending in a newline."""
    _, pages = open_export(engine, dataset_id, split=split, fmt=fmt, redact=redact)
    return (line for page in pages for line in page.lines)


@dataclass(frozen=True, slots=True)
class DatasetDiff:
    """What changed from dataset ``a`` to dataset ``b``, matched by prompt hash."""

    a: str
    b: str
    added: int
    removed: int
    changed: int
    unchanged: int
    added_examples: list[dict[str, Any]] = field(default_factory=list)
    removed_examples: list[dict[str, Any]] = field(default_factory=list)
    changed_examples: list[dict[str, Any]] = field(default_factory=list)
    """Same prompt, another capture or another example; each list holds at most ``limit``."""


def _index(engine: Engine, dataset_id: str) -> dict[str, tuple[str, str, bytes]]:
    """prompt hash -> (capture id, split, digest of the example)."""
    index: dict[str, tuple[str, str, bytes]] = {}
    for side in SPLITS:
        for rows in _pages(engine, dataset_id, side, 5000):
            for row in rows:
                digest = hashlib.sha256(orjson.dumps(row.example, option=orjson.OPT_SORT_KEYS))
                index[row.prompt_hash] = (row.capture_id, side, digest.digest())
    return index


def diff_datasets(engine: Engine, a_id: str, b_id: str, *, limit: int = 100) -> DatasetDiff:
    require_dataset(engine, a_id)
    require_dataset(engine, b_id)
    old, new = _index(engine, a_id), _index(engine, b_id)
    added = [
        {"prompt_hash": h, "capture_id": cid, "split": side}
        for h, (cid, side, _) in new.items()
        if h not in old
    ]
    removed = [
        {"prompt_hash": h, "capture_id": cid, "split": side}
        for h, (cid, side, _) in old.items()
        if h not in new
    ]
    changed = [
        {"prompt_hash": h, "a_capture_id": old[h][0], "b_capture_id": cid, "split": side}
        for h, (cid, side, digest) in new.items()
        if h in old and (old[h][0] != cid or old[h][2] != digest)
    ]
    return DatasetDiff(
        a=a_id,
        b=b_id,
        added=len(added),
        removed=len(removed),
        changed=len(changed),
        unchanged=sum(1 for h in new if h in old) - len(changed),
        added_examples=added[:limit],
        removed_examples=removed[:limit],
        changed_examples=changed[:limit],
    )
