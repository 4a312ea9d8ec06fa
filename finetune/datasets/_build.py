"""One build's work: bodies loaded a batch at a time, each capture read once into its example
and keys, earlier turns looked up per batch, examples written per batch; then the threading
settled across the whole build.

On PostgreSQL the batches go through a pipeline of three: while this thread reads the
captures of one batch, a loader fetches the bodies, edits and corrections of the next and a
writer stores the examples of the one before. The server does its part (encoding the bodies,
parsing the examples) in its own process meanwhile, and loader and writer mostly wait on it.
SQLite works inside this process, releasing the interpreter lock for each row it steps
through; beside a thread that keeps the lock busy it waits for it again every time, so there
the three run one after the other.
"""

from __future__ import annotations

import gc
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlmodel import Session

from finetune.datasets._build_store import BuildStore
from finetune.datasets._export import freeze_preferences
from finetune.datasets._input import SplitRatios
from finetune.datasets._prompt import prompt_hash
from finetune.datasets._reading import Reading, TurnCache, read_capture
from finetune.datasets._response_threads import thread_request
from finetune.datasets._responses import is_responses_exchange
from finetune.datasets._threading import (
    answer_message,
    clean_message,
    mark_untaught,
    normalise_turn,
    without_empty_turns,
)
from storage import (
    Dataset,
    answers_for_prompts,
    delete_dataset_examples,
    insert_dataset_examples,
    load_capture_bodies,
    load_dataset_examples,
    newest_corrections,
    newest_edits,
    update_dataset_example,
)

Progress = Callable[[int, int], None]
"""Called with (done, total) as a build settles each prompt."""

_Built = tuple[Row[Any], dict[str, Any], dict[str, Any], Reading]
"""(candidate row, request, original answer, its reading) of one capture in a batch."""

_CHUNK = 1000

HELD_EXAMPLES = 5000
"""Examples kept back from the writer, newest last. A conversation's turns arrive close
together, so most earlier turns are known to be one before their example leaves, and are
never written; the few found later are deleted when the build settles."""


class _Collector:
    """The cyclic garbage collector, paused while any build runs in this process.

    A build keeps a few hundred thousand small containers alive (its candidates, its keys, a
    batch's bodies and examples), and the collector walked all of them, and every other object
    of the process, each time they grew by a quarter: a quarter of a build's time, in pauses of
    a few hundred milliseconds that every thread of the process, the event loop's included,
    waited out. What a build frees, reference counting frees; the collector runs once when the
    last build ends.
    """

    lock = threading.Lock()
    builds = 0
    was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    with _Collector.lock:
        if _Collector.builds == 0:
            _Collector.was_enabled = gc.isenabled()
            gc.disable()
        _Collector.builds += 1
    try:
        yield
    finally:
        with _Collector.lock:
            _Collector.builds -= 1
            if _Collector.builds == 0 and _Collector.was_enabled:
                gc.enable()


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a batch needs from the store before it can be read."""

    bodies: dict[str, tuple[Any, Any]]
    edits: dict[str, dict[str, Any]]
    corrections: dict[str, dict[str, Any]]


class Build:
    """The state of one build as it goes through its batches."""

    def __init__(
        self, store: BuildStore, dataset: Dataset, ratios: SplitRatios, contested: set[str]
    ) -> None:
        self.store = store
        self.dataset = dataset
        self.ratios = ratios
        self.contested = contested
        self.skipped: Counter[str] = Counter()
        self.sides: dict[str, str] = {}
        self.whole_keys: dict[bytes, list[str]] = defaultdict(list)
        self.turn_keys: set[bytes] = set()
        self.untaught: dict[str, dict[int, bytes]] = {}
        """capture id -> its weight-0 turns (index -> conversation key up to the turn)."""
        self.pairs = 0
        self.turns: TurnCache = {}
        self.held: deque[tuple[bytes | None, dict[str, Any]]] = deque()
        """(whole key, or None when it cannot be an earlier turn; example row) not yet written."""
        self.unwritten: set[str] = set()
        """Captures left out as earlier turns before their example was written."""

    def load(self, batch: list[Row[Any]]) -> Loaded:
        ids = [row.id for row in batch]
        with self.store.reading() as session:
            return Loaded(
                load_capture_bodies(ids, session=session, answers_only=True),
                newest_edits(ids, session=session),
                newest_corrections(ids, session=session),
            )

    def add(
        self, batch: list[Row[Any]], loaded: Loaded
    ) -> tuple[list[Row[Any]], list[dict[str, Any]]]:
        """The examples of ``batch`` to write, and the captures that gave none."""
        with self.store.reading() as session:
            failed, built = self._read(batch, loaded.bodies, loaded.edits, session)
            self._mark_untaught(built, loaded.edits, session)
            self.pairs += freeze_preferences(
                [
                    (row, request, answer, reading.example)
                    for row, request, answer, reading in built
                ],
                loaded.edits,
                loaded.corrections,
                self.contested,
                session=session,
            )
        for row, request, _, reading in built:
            self.sides[row.id] = self.ratios.side(reading.split_key)
            example = {
                "dataset_id": self.dataset.id,
                "capture_id": row.id,
                "position": len(self.sides) - 1,
                "split": self.sides[row.id],
                "prompt_hash": row.prompt_hash or prompt_hash(request),
                "example": reading.example,
            }
            self.held.append((None if row.id in loaded.edits else reading.whole, example))
        return failed, self.release(HELD_EXAMPLES)

    def release(self, keep: int = 0) -> list[dict[str, Any]]:
        """The held examples past the newest ``keep``, to write, less the earlier turns."""
        released = []
        while len(self.held) > keep:
            whole, example = self.held.popleft()
            if whole is not None and whole in self.turn_keys:
                self.unwritten.add(example["capture_id"])
            else:
                released.append(example)
        return released

    def write(self, examples: list[dict[str, Any]]) -> None:
        with self.store.writing() as session:
            insert_dataset_examples(examples, session=session)

    def _read(
        self,
        batch: list[Row[Any]],
        bodies: Mapping[str, tuple[Any, Any]],
        edits: Mapping[str, Any],
        session: Session,
    ) -> tuple[list[Row[Any]], list[_Built]]:
        failed: list[Row[Any]] = []
        built: list[_Built] = []
        for row in batch:
            request, response = bodies.get(row.id, (None, None))
            if is_responses_exchange(request, response):
                request = thread_request(request, session=session)
            edit = edits.get(row.id)
            final = clean_message({**edit, "role": "assistant"}) if edit is not None else None
            answer, reason = answer_message(response)
            # A reviewer's edit can stand in for an answer the teacher did not give.
            answer = answer or final
            messages = request.get("messages") if isinstance(request, dict) else None
            if not isinstance(messages, list) or not messages:
                answer, reason = None, "no_messages"
            if answer is None:
                self.skipped[reason or "no_answer"] += 1
                failed.append(row)
                continue
            request = without_empty_turns(request)
            built.append(
                (
                    row,
                    request,
                    answer,
                    read_capture(request, answer, final, row.prompt_hash, self.turns),
                )
            )
        return failed, built

    def _mark_untaught(
        self, built: list[_Built], edits: Mapping[str, Any], session: Session
    ) -> None:
        """Weight 0 on assistant turns no capture in the store answered (as far as a lookup
        by prompt hash finds; ``settle`` looks again within the build)."""
        hashes = {prompt for *_, reading in built for _, prompt in reading.prompts}
        taught: dict[str, list[Any]] = defaultdict(list)
        for found in answers_for_prompts(hashes, session=session, answers_only=True):
            answer, _ = answer_message(found.response)
            if answer is not None and not found.edited:
                taught[found.prompt_hash].append(normalise_turn(answer))
        for row, _, _, reading in built:
            if row.id not in edits:
                # An edited answer is a correction worth its own example, never threaded away.
                self.whole_keys[reading.whole].append(row.id)
            self.turn_keys.update(reading.turns.values())
            messages = reading.example["messages"]
            untaught = [
                index
                for index, prompt in reading.prompts
                if normalise_turn(messages[index]) not in taught[prompt]
            ]
            if untaught:
                mark_untaught(reading.example, untaught)
                self.untaught[row.id] = {index: reading.turns[index] for index in untaught}

    def settle(self) -> tuple[int, int]:
        """Drop captures that are an earlier turn of a longer conversation in the build, and
        lift weight 0 from turns such a capture answered (a client that sent other tools
        with the next turn hides it from the lookup by prompt hash).

        Returns (captures dropped, turns left at weight 0).
        """
        dropped = [
            cid for key, ids in self.whole_keys.items() if key in self.turn_keys for cid in ids
        ]
        written = [cid for cid in dropped if cid not in self.unwritten]
        for start in range(0, len(written), _CHUNK):
            with self.store.writing() as session:
                delete_dataset_examples(
                    self.dataset.id, written[start : start + _CHUNK], session=session
                )
        for capture_id in dropped:
            del self.sides[capture_id]
            self.untaught.pop(capture_id, None)
        lifted = {
            capture_id: [index for index, key in turns.items() if key in self.whole_keys]
            for capture_id, turns in self.untaught.items()
        }
        lifts = [(capture_id, indices) for capture_id, indices in lifted.items() if indices]
        for start in range(0, len(lifts), _CHUNK):
            chunk = dict(lifts[start : start + _CHUNK])
            # The build's own rows: read where they are written (PostgreSQL has not committed).
            with self.store.writing() as session:
                stored = load_dataset_examples(self.dataset.id, chunk, session=session)
                for capture_id, indices in chunk.items():
                    example = stored[capture_id]
                    for index in indices:
                        example["messages"][index].pop("weight", None)
                        del self.untaught[capture_id][index]
                    update_dataset_example(self.dataset.id, capture_id, example, session=session)
        return len(dropped), sum(len(turns) for turns in self.untaught.values())


class _Inline(Executor):
    """Runs each task as it is submitted."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(exc)
        return future


def _prefetched(loader: Executor, build: Build, batches: list[list[Row[Any]]]) -> Iterator[Loaded]:
    """What each batch needs, the next one's fetched while this one is read."""
    ahead = loader.submit(build.load, batches[0]) if batches else None
    for index in range(len(batches)):
        assert ahead is not None
        loaded = ahead.result()
        if index + 1 < len(batches):
            ahead = loader.submit(build.load, batches[index + 1])
        yield loaded


def build_groups(
    build: Build, groups: dict[str, list[Row[Any]]], batch_size: int, progress: Progress | None
) -> int:
    """Build one example per group, falling back to the next capture when the best one has no
    usable answer. Returns how many duplicates were left out."""
    tried = dict.fromkeys(groups, 0)
    group_of = {members[0].id: key for key, members in groups.items()}
    pending = sorted((members[0] for members in groups.values()), key=lambda r: r.id)
    done = 0
    writing: Future[None] | None = None
    with ExitStack() as threads:
        loader: Executor = _Inline()
        writer: Executor = _Inline()
        if build.store.pipelined:
            loader = threads.enter_context(ThreadPoolExecutor(1, "dataset-load"))
            writer = threads.enter_context(ThreadPoolExecutor(1, "dataset-write"))
        while pending:
            retry: list[Row[Any]] = []
            batches = [pending[at : at + batch_size] for at in range(0, len(pending), batch_size)]
            for batch, loaded in zip(batches, _prefetched(loader, build, batches), strict=True):
                for row in batch:
                    tried[group_of[row.id]] += 1
                failed_rows, examples = build.add(batch, loaded)
                # One batch in the writer at a time: writes keep their order, memory its bound.
                if writing is not None:
                    writing.result()
                writing = writer.submit(build.write, examples)
                failed = {row.id for row in failed_rows}
                for row in batch:
                    key = group_of[row.id]
                    if row.id in failed and tried[key] < len(groups[key]):
                        following = groups[key][tried[key]]
                        group_of[following.id] = key
                        retry.append(following)
                    else:
                        done += 1
                if progress is not None:
                    progress(done, len(groups))
            pending = retry
        if writing is not None:
            writing.result()
        build.write(build.release())
    # A group that found its example leaves the rest out; one that ran out tried them all.
    return sum(len(groups[key]) - count for key, count in tried.items())
