"""The evaluation worker: runs stored evaluations to their end, wherever they were started.

Every replica may run one. Each round it fails the evaluations whose runners kept dying, then
claims what it has room for: pending evaluations, and running ones whose runner's lease ran
out (a crash, a ``kill -9``), which it resumes. The lease makes sure one runner works on each.
It runs a round every ``poll_seconds``, and at once when nudged (an evaluation was just
created). Stopping hands what it runs back as pending, for the next runner to resume at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import openai
from sqlalchemy import Engine

from finetune.evaluation._lease import EvaluationLease, claim_next
from finetune.evaluation._run import run_claimed
from storage import Evaluation, OutageLog

log = logging.getLogger("stillroom.evals")


class EvaluationWorker:
    def __init__(
        self,
        engine: Engine,
        client_factory: Callable[[], openai.AsyncOpenAI],
        *,
        poll_seconds: float = 5.0,
        lease: EvaluationLease | None = None,
        max_running: int = 4,
        upstream_client: Callable[[str], openai.AsyncOpenAI | None] | None = None,
        upstream_model: Callable[[str, str], str] | None = None,
    ) -> None:
        self.engine = engine
        self.client_factory = client_factory
        # An evaluation whose config names an ``upstream`` asks its model there (a
        # self-hosted student), by the name that upstream knows it by; the judge stays here.
        self.upstream_client = upstream_client
        self.upstream_model = upstream_model
        self._upstream_clients: dict[str, openai.AsyncOpenAI] = {}
        self.poll_seconds = poll_seconds
        self.lease = lease or EvaluationLease()
        self.max_running = max_running
        self.rounds = 0
        self._outage = OutageLog(log, "evaluation worker")
        """Completed rounds (tests wait on it)."""
        self._running: dict[str, asyncio.Task[Evaluation]] = {}
        self._nudged: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._client: openai.AsyncOpenAI | None = None

    @property
    def running(self) -> list[str]:
        """The evaluations this worker runs now."""
        return list(self._running)

    async def start(self) -> None:
        self._nudged = asyncio.Event()
        self._client = self.client_factory()
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    def nudge(self) -> None:
        """Look for work now rather than at the next poll."""
        if self._nudged is not None:
            self._nudged.set()

    async def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop looking for work and hand back what runs (bounded by ``timeout_seconds``)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        running = list(self._running.values())
        for task in running:
            task.cancel()
        if running:
            _, late = await asyncio.wait(running, timeout=timeout_seconds)
            if late:
                # Their leases run out on their own; the next runner resumes them then.
                log.warning("%d evaluations did not stop in time", len(late))
        if self._client is not None:
            await self._client.close()
        for client in self._upstream_clients.values():
            await client.close()
        self._upstream_clients.clear()

    async def _loop(self) -> None:
        assert self._nudged is not None
        while True:
            self._nudged.clear()
            try:
                await self._round()
            except Exception as exc:  # noqa: BLE001 - one bad round, not the worker
                self._outage.failed(exc, self.poll_seconds)
            else:
                self._outage.succeeded()
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self.poll_seconds)

    async def _round(self) -> None:
        while len(self._running) < self.max_running:
            skip = set(self._running)
            evaluation = await asyncio.to_thread(claim_next, self.engine, self.lease, skip=skip)
            if evaluation is None:
                return
            self._start(evaluation)

    def _start(self, evaluation: Evaluation) -> None:
        assert self._client is not None
        if evaluation.progress:
            log.info(
                "resuming evaluation %s at %d of %s examples (attempt %d)",
                evaluation.id,
                evaluation.progress,
                evaluation.total,
                evaluation.attempts,
            )
        else:
            log.info("running evaluation %s of %s", evaluation.id, evaluation.model)
        task = asyncio.get_running_loop().create_task(
            run_claimed(
                self.engine,
                self._client,
                evaluation,
                self.lease,
                served_by=self._served_by(evaluation),
            )
        )
        self._running[evaluation.id] = task
        task.add_done_callback(lambda done: self._done(evaluation.id, done))

    def _served_by(self, evaluation: Evaluation) -> dict[str, tuple[openai.AsyncOpenAI, str]]:
        upstream = evaluation.config.get("upstream")
        if not isinstance(upstream, str) or upstream == "default" or self.upstream_client is None:
            return {}
        client = self._upstream_clients.get(upstream)
        if client is None:
            client = self.upstream_client(upstream)
            if client is None:
                return {}
            self._upstream_clients[upstream] = client
        name = self.upstream_model(upstream, evaluation.model) if self.upstream_model else None
        return {evaluation.model: (client, name or evaluation.model)}

    def _done(self, evaluation_id: str, task: asyncio.Task[Evaluation]) -> None:
        self._running.pop(evaluation_id, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # Recorded as failed on the evaluation by the runner; the log keeps the traceback.
            log.error("evaluation %s failed", evaluation_id, exc_info=error)
        else:
            found = task.result()
            log.info("evaluation %s %s", evaluation_id, found.state)
        # A slot is free: there may be more waiting.
        self.nudge()
