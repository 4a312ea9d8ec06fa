"""Serving self-hosted students: make every replica of an upstream serve one before a route
points at it, and unload the ones no route can return to.

A replica that restarts forgets its runtime adapters: the cycle runner's round loads the
students routes send traffic to again (``restore_routed``); until then their requests fall back
to the teacher.

Upstream kinds:
  openai        a provider that serves its own fine-tunes (OpenAI's ``ft:`` models): nothing to do
  vllm          vLLM's OpenAI server with runtime LoRA (``--enable-lora`` and
                ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), or anything with the same API:
                ``POST /v1/load_lora_adapter`` on each replica, then ``GET /v1/models`` lists it
  transformers  ``transformers serve``: merged models, asked for by their path (the ``ft:`` name
                is rewritten to it on the way out); each replica must list the student, and
                one started without a model is asked to load it (``POST /load_model``)

A student's weights are found from its name: ``ft:<base>:local:<suffix>:<job id>`` names the
job folder ``<root>/<job id>`` of a local training backend, which holds ``adapter/`` (PEFT:
``adapter_config.json`` and safetensors) and, when merged, ``merged/``.

    ServingError            any refusal; ``param`` and ``code`` name the problem
    ├── StudentNotFound     no weights for that model name
    └── StudentNotServed    a replica did not load it, or does not list it afterwards
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from sqlalchemy import Engine

from finetune.routing._replicas import (
    ReplicaError,
    adapters,
    load_adapter,
    load_merged,
    unload_adapter,
)
from storage import (
    current_alias_versions,
    get_alias_version,
    list_promotions,
    session_scope,
)

log = logging.getLogger("stillroom.serving")

UpstreamKind = Literal["openai", "vllm", "transformers"]


class ServingError(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class StudentNotFound(ServingError):
    pass


class StudentNotServed(ServingError):
    pass


@dataclass(frozen=True, slots=True)
class StudentWeights:
    """Where a trained student's weights lie, as the serving machines see the paths."""

    adapter: Path | None
    """The PEFT adapter folder (``adapter_config.json`` and safetensors)."""
    merged: Path | None
    """The base model with the adapter merged in, saved whole; None when not merged."""


StudentLocator = Callable[[str], StudentWeights | None]
"""Model name -> its weights, or None when it is no student trained here."""


def local_job_id(model: str) -> str | None:
    """The job id in ``ft:<base>:local:<suffix>:<job id>``; None for any other name."""
    parts = model.split(":")
    if len(parts) < 5 or parts[0] != "ft" or parts[-3] != "local" or not parts[-1]:
        return None
    return parts[-1]


def job_folder_weights(folder: Path) -> StudentWeights:
    """What a local training job left in its folder: ``adapter/`` and ``merged/``."""
    adapter, merged = folder / "adapter", folder / "merged"
    return StudentWeights(
        adapter=adapter if (adapter / "adapter_config.json").is_file() else None,
        merged=merged if (merged / "config.json").is_file() else None,
    )


def local_student_locator(roots: Iterable[Path]) -> StudentLocator:
    """Finds a local student in ``<root>/<job id>`` under the training backends' roots."""
    folders = tuple(roots)

    def locate(model: str) -> StudentWeights | None:
        job_id = local_job_id(model)
        if job_id is None or "/" in job_id or job_id in (".", ".."):
            return None
        for root in folders:
            folder = root / job_id
            if folder.is_dir():
                return job_folder_weights(folder)
        return None

    return locate


@dataclass(frozen=True, slots=True)
class ServedUpstream:
    """A named upstream as the serving service sees it."""

    name: str
    kind: UpstreamKind
    replicas: tuple[str, ...]
    """Base URL of every replica, each with its ``/v1``: what a LoRA is loaded on."""
    api_key: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaFailure:
    replica: str
    reason: str


@dataclass(slots=True)
class StudentServing:
    """Loads students onto the upstreams that serve them and unloads the unused.

    ``transport`` is the HTTP seam: tests pass an ``httpx.MockTransport`` or nothing and a
    real local server."""

    upstreams: Mapping[str, ServedUpstream]
    locate: StudentLocator
    timeout_seconds: float = 300.0
    """Loading an adapter reads its weights; a big one on a slow disk takes a while."""
    transport: httpx.BaseTransport | None = None
    _names: dict[tuple[str, str], str] = field(default_factory=dict, init=False, repr=False)

    def kind(self, upstream: str) -> UpstreamKind:
        found = self.upstreams.get(upstream)
        return found.kind if found is not None else "openai"

    def upstream_model(self, upstream: str, model: str) -> str:
        """The name ``upstream`` knows ``model`` by: the merged folder's path for a
        ``transformers`` upstream, the model itself elsewhere."""
        if self.kind(upstream) != "transformers":
            return model
        key = (upstream, model)
        name = self._names.get(key)
        if name is None:
            weights = self.locate(model)
            if weights is None or weights.merged is None:
                return model  # not merged yet, maybe: asked again next time
            name = self._names[key] = str(weights.merged)
        return name

    def prepare(self, upstream: str, model: str) -> None:
        """Make every replica of ``upstream`` serve ``model``; raises StudentNotServed naming
        each replica that did not, StudentNotFound when there is nothing to load."""
        served = self.upstreams.get(upstream)
        if served is None or served.kind == "openai":
            return
        weights = self.locate(model)
        load: Callable[[httpx.Client, str], str | None]
        if served.kind == "transformers":
            merged = weights.merged if weights is not None else None
            if merged is None:
                raise StudentNotFound(
                    f"Upstream {upstream!r} serves merged models only, and {model!r} has no "
                    "merged model: merge the adapter (PEFT's merge_and_unload) into merged/.",
                    param="model",
                    code="student_not_merged",
                )
            hint = (
                f" (start `transformers serve {merged}` there, or a `transformers serve` "
                "without a model, which loads it when asked)"
            )

            def load(client: httpx.Client, replica: str) -> str | None:
                return load_merged(client, replica, str(merged))
        else:
            adapter = weights.adapter if weights is not None else None
            if adapter is None:
                raise StudentNotFound(
                    f"No LoRA adapter found for {model!r}: it names no local training job "
                    "whose folder holds adapter/adapter_config.json.",
                    param="model",
                    code="adapter_not_found",
                )
            hint = ""

            def load(client: httpx.Client, replica: str) -> str | None:
                return load_adapter(client, replica, model, adapter)

        failures: list[ReplicaFailure] = []
        with self._client(served) as client:
            for replica in served.replicas:
                reason = load(client, replica)
                if reason is not None:
                    failures.append(ReplicaFailure(replica, reason))
        if failures:
            where = "; ".join(f"{f.replica}: {f.reason}" for f in failures)
            raise StudentNotServed(
                f"{len(failures)} of {len(served.replicas)} replicas of upstream {upstream!r} "
                f"do not serve {model!r}: {where}{hint}"[:2000],
                param="model",
                code="student_not_served",
            )
        log.info("upstream %s: %s served by %d replicas", upstream, model, len(served.replicas))

    def release(self, upstream: str, keep: Iterable[str]) -> list[str]:
        """Unload from every replica the students (``ft:`` adapters) not in ``keep``; returns
        what was unloaded. Best effort: a replica that fails is logged and tried next time."""
        served = self.upstreams.get(upstream)
        if served is None or served.kind != "vllm":
            return []
        kept = set(keep)
        unloaded: list[str] = []
        with self._client(served) as client:
            for replica in served.replicas:
                try:
                    listed = adapters(client, replica)
                except ReplicaError as exc:
                    log.warning("upstream %s: %s: %s", upstream, replica, exc.reason)
                    continue
                for name in sorted(listed - kept):
                    if not name.startswith("ft:"):
                        continue
                    reason = unload_adapter(client, replica, name)
                    if reason is None:
                        unloaded.append(name)
                    else:
                        log.warning("upstream %s: %s: %s", upstream, replica, reason)
        if unloaded:
            log.info("upstream %s: unloaded %s", upstream, ", ".join(sorted(set(unloaded))))
        return unloaded

    def release_unused(self, engine: Engine, upstream: str) -> list[str]:
        """``release`` keeping every student a route serves or can be rolled back to."""
        if self.kind(upstream) != "vllm":
            return []
        return self.release(upstream, students_in_use(engine, upstream))

    def restore_routed(self, engine: Engine) -> list[str]:
        """Load again the students routes send traffic to on ``vllm`` upstreams, wherever a
        replica lost them (a restart forgets runtime adapters); returns the ones that could
        not be served, with why, and logs them."""
        problems: list[str] = []
        for name, served in self.upstreams.items():
            if served.kind != "vllm":
                continue
            for model in sorted(students_routed(engine, name)):
                try:
                    self.prepare(name, model)
                except ServingError as exc:
                    problems.append(exc.message)
                    log.warning("upstream %s: %s", name, exc.message)
        return problems

    def _client(self, served: ServedUpstream) -> httpx.Client:
        headers = {"authorization": f"Bearer {served.api_key}"} if served.api_key else {}
        return httpx.Client(transport=self.transport, timeout=self.timeout_seconds, headers=headers)


def students_in_use(engine: Engine, upstream: str) -> set[str]:
    """Models on ``upstream`` in any alias's current or previous version, or in the version
    its latest promotion started from (what aborting that promotion returns to)."""
    wanted: set[str] = set()
    with session_scope(engine) as session:
        for alias, current in current_alias_versions(session=session):
            versions = [current]
            earlier = {alias.previous_version}
            latest = list_promotions(session=session, alias=alias.name, limit=1)
            if latest:
                earlier.add(latest[0].from_version)
            for number in earlier - {None, current.version}:
                assert number is not None
                row = get_alias_version(alias.name, number, session=session)
                if row is not None:
                    versions.append(row)
            wanted.update(_models_on(upstream, (t for v in versions for t in v.targets)))
    return wanted


def students_routed(engine: Engine, upstream: str) -> set[str]:
    """Models on ``upstream`` that an alias's current version sends traffic to."""
    with session_scope(engine) as session:
        return _models_on(
            upstream,
            (
                t
                for _, current in current_alias_versions(session=session)
                for t in current.targets
                if t.get("weight", 0) > 0 and t.get("role") == "student"
            ),
        )


def _models_on(upstream: str, targets: Iterable[Mapping[str, Any]]) -> set[str]:
    return {
        str(t["model"])
        for t in targets
        if t.get("upstream", "default") == upstream and "model" in t
    }
