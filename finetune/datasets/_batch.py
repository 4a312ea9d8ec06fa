"""One batch of a build read into what the build keeps of it, here or in worker processes.

Reading a batch is most of a build's work, and it needs nothing from the batches before it:
load the bodies, edits and corrections; read each capture once into its example and keys
(``_reading``); look up which assistant turns the store answered; attach preference pairs;
encode the examples as the JSON text the store keeps. What crosses batches (the thread keys,
the held examples, the split counts) stays with the build, which takes each batch's result in
the order it gave the batches, so a build's output does not depend on where, or how fast, its
batches were read.

A large build reads its batches in worker processes, one engine each, beside the build's own
process, which keeps the books and writes: decoding and hashing are CPU work that the
interpreter lock keeps to one core within a process. A worker is its own process, so it
turns its cyclic garbage collector off (reference counting frees a batch; a collection now
and then takes what cycles the database layer leaves) without pausing anyone else's.

Workers come from a fork server (spawned where there is none), and a worker imports the main
module of the build's program, as multiprocessing does: a program that builds datasets keeps
its work under ``if __name__ == "__main__":``, as ``stillroom`` and the benchmarks do.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from multiprocessing.context import BaseContext
from multiprocessing.util import Finalize
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from finetune.datasets._export import freeze_preferences
from finetune.datasets._prompt import prompt_hash
from finetune.datasets._reading import Candidate, Reading, TurnCache, read_capture
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
    answers_for_prompts,
    json_text,
    load_capture_bodies,
    make_engine,
    newest_corrections,
    newest_edits,
    session_scope,
)

BuiltExample = tuple[str, bytes, bool, list[bytes], dict[int, bytes], str, str, str]
"""One capture that gave an example: (capture id, key of the whole exchange, whether a
reviewer edited it, keys of its assistant turns, its weight-0 turns (index -> key), split
key, prompt hash, the example as JSON text). A tuple: it crosses from a worker by pickle."""


@dataclass(slots=True)
class BatchResult:
    built: list[BuiltExample]
    """In the batch's order."""
    failed: list[str]
    """Captures that gave no example."""
    skipped: dict[str, int]
    """Why, per reason."""
    pairs: int
    """Examples that got a preference pair."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a batch needs from the store before it can be read."""

    bodies: dict[str, tuple[Any, Any]]
    edits: dict[str, dict[str, Any]]
    corrections: dict[str, dict[str, Any]]


_Read = tuple[Candidate, dict[str, Any], dict[str, Any], Reading]

COLLECT_EVERY = 25
"""Batches a worker reads between two runs of its garbage collector."""


class BatchReader:
    """Reads batches of one build from ``engine``; ``contested`` are the prompts whose
    feedback can make preference pairs."""

    def __init__(self, engine: Engine, contested: frozenset[str]) -> None:
        self.engine = engine
        self.contested = contested
        self.turns: TurnCache = {}

    def load(self, batch: list[Candidate]) -> Loaded:
        """What a batch needs from the store before it can be read."""
        ids = [candidate.id for candidate in batch]
        with session_scope(self.engine) as session:
            return Loaded(
                load_capture_bodies(ids, session=session, answers_only=True),
                newest_edits(ids, session=session),
                newest_corrections(ids, session=session),
            )

    def read(self, batch: list[Candidate], loaded: Loaded | None = None) -> BatchResult:
        if loaded is None:
            loaded = self.load(batch)
        edits = loaded.edits
        with session_scope(self.engine) as session:
            skipped: Counter[str] = Counter()
            failed, read = self._read(batch, loaded.bodies, edits, skipped, session)
            untaught = self._mark_untaught(read, session)
            pairs = freeze_preferences(
                [(candidate, request, answer, r.example) for candidate, request, answer, r in read],
                edits,
                loaded.corrections,
                self.contested,
                session=session,
            )
        built: list[BuiltExample] = [
            (
                candidate.id,
                reading.whole,
                candidate.id in edits,
                list(reading.turns.values()),
                untaught.get(candidate.id, {}),
                reading.split_key,
                candidate.prompt_hash or prompt_hash(request),
                json_text(reading.example),
            )
            for candidate, request, _, reading in read
        ]
        return BatchResult(built, failed, dict(skipped), pairs)

    def _read(
        self,
        batch: list[Candidate],
        bodies: Mapping[str, tuple[Any, Any]],
        edits: Mapping[str, Any],
        skipped: Counter[str],
        session: Session,
    ) -> tuple[list[str], list[_Read]]:
        failed: list[str] = []
        read: list[_Read] = []
        for candidate in batch:
            request, response = bodies.get(candidate.id, (None, None))
            if is_responses_exchange(request, response):
                request = thread_request(request, session=session)
            edit = edits.get(candidate.id)
            final = clean_message({**edit, "role": "assistant"}) if edit is not None else None
            answer, reason = answer_message(response)
            # A reviewer's edit can stand in for an answer the teacher did not give.
            answer = answer or final
            messages = request.get("messages") if isinstance(request, dict) else None
            if not isinstance(messages, list) or not messages:
                answer, reason = None, "no_messages"
            if answer is None:
                skipped[reason or "no_answer"] += 1
                failed.append(candidate.id)
                continue
            request = without_empty_turns(request)
            reading = read_capture(request, answer, final, candidate.prompt_hash, self.turns)
            read.append((candidate, request, answer, reading))
        return failed, read

    def _mark_untaught(self, read: list[_Read], session: Session) -> dict[str, dict[int, bytes]]:
        """Weight 0 on assistant turns no capture in the store answered (as far as a lookup
        by prompt hash finds; the build looks again within itself when it settles).
        Returns capture id -> its weight-0 turns (index -> key of the conversation up to it)."""
        hashes = {prompt for *_, reading in read for _, prompt in reading.prompts}
        taught: dict[str, list[Any]] = defaultdict(list)
        for found in answers_for_prompts(hashes, session=session, answers_only=True):
            answer, _ = answer_message(found.response)
            if answer is not None and not found.edited:
                taught[found.prompt_hash].append(normalise_turn(answer))
        marked: dict[str, dict[int, bytes]] = {}
        for candidate, _, _, reading in read:
            messages = reading.example["messages"]
            untaught = [
                index
                for index, prompt in reading.prompts
                if normalise_turn(messages[index]) not in taught[prompt]
            ]
            if untaught:
                mark_untaught(reading.example, untaught)
                marked[candidate.id] = {index: reading.turns[index] for index in untaught}
        return marked


class InlineExecutor(Executor):
    """Runs each task as it is submitted."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(exc)
        return future


_worker_reader: BatchReader | None = None
"""The reader of a worker process (set by ``_start_worker``; never in the build's process)."""

_worker_batches = 0


WORKER_NICENESS = 10
"""Added to a worker's niceness: a build is background work, and its workers give way to the
process's own threads (the event loop, the capture writer) and the database server."""


def _start_worker(url: str, contested: frozenset[str]) -> None:
    global _worker_reader
    gc.disable()
    os.nice(WORKER_NICENESS)
    engine = make_engine(url, pool_size=1)
    _worker_reader = BatchReader(engine, contested)
    # Run as the worker exits when the pool shuts down: its connection closes cleanly.
    Finalize(_worker_reader, engine.dispose, exitpriority=10)


def _read_in_worker(batch: list[Candidate]) -> BatchResult:
    global _worker_batches
    assert _worker_reader is not None
    result = _worker_reader.read(batch)
    _worker_batches += 1
    if _worker_batches % COLLECT_EVERY == 0:
        gc.collect()
    return result


MIN_WORKER_BATCHES = 8
"""A build of fewer batches reads them in its own process: starting a worker costs more."""


def default_workers(engine: Engine, batches: int) -> int:
    """Worker processes for a build of ``batches`` batches: none for a small build or one whose
    database another process cannot open (SQLite in memory); else one a core, less, on
    PostgreSQL, the two its server and the build's own process keep busy between them.

    Workers run niced (``WORKER_NICENESS``): on SQLite, where the build's process mostly
    waits on them, they take the cores the server's threads leave idle, and a capture writer
    beside a build keeps its rate. On PostgreSQL the build's process and the server's
    backends are busy all along, and a niced worker beside them only waits."""
    if batches < MIN_WORKER_BATCHES or not _shareable(engine):
        return 0
    cores = os.cpu_count() or 1
    if engine.url.get_backend_name() != "sqlite":
        cores -= 2
    return max(0, min(cores, 4))


def _shareable(engine: Engine) -> bool:
    url = engine.url
    return url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:")


def _worker_context() -> BaseContext:
    """Workers forked from a fork server that has this module imported, where there is one:
    a worker then starts in milliseconds, where a spawned one imports the database layer
    and the package again (a second or more of CPU each). Never forked from the build's own
    process, which may be a server with threads and a loop."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Read when the process's fork server starts, its first use.
    context.set_forkserver_preload([__name__])
    return context


ReadBatch = Callable[[list[Candidate]], Callable[[], BatchResult]]
"""Starts reading a batch; what it returns gives the batch's result when called."""


@contextmanager
def batch_readers(
    engine: Engine, contested: frozenset[str], workers: int, *, prefetch: bool = False
) -> Iterator[ReadBatch]:
    """Batches read in ``workers`` worker processes, or, when ``workers`` is 0, in this
    process as their results are asked for; with ``prefetch``, each batch's bodies loaded
    meanwhile by a thread (for a store that works in a process of its own, PostgreSQL)."""
    if workers <= 0 or not _shareable(engine):
        reader = BatchReader(engine, contested)
        if not prefetch:
            yield lambda batch: partial(reader.read, batch)
            return
        with ThreadPoolExecutor(1, "dataset-load") as loader:

            def start(batch: list[Candidate]) -> Callable[[], BatchResult]:
                loading = loader.submit(reader.load, batch)
                return lambda: reader.read(batch, loading.result())

            yield start
        return
    pool = ProcessPoolExecutor(
        workers,
        mp_context=_worker_context(),
        initializer=_start_worker,
        initargs=(engine.url.render_as_string(hide_password=False), contested),
    )
    try:
        yield lambda batch: pool.submit(_read_in_worker, batch).result
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
