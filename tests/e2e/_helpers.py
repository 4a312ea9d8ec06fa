"""Shared pieces of the end-to-end tests: the recordings as the SDK sends them, a wire tap on
the client, the capture store, and an oracle that folds a stream the way OpenAI documents it.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import functools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote

import httpx
import httpx2
from sqlalchemy import Engine

from storage import (
    Capture,
    count_captures,
    get_capture,
    get_capture_by_completion_id,
    list_capture_summaries,
    session_scope,
)
from tests.replay import (
    Interaction,
    ReceivedRequest,
    ReplayUpstream,
    all_cassettes,
    load_cassette,
)
from tests.support import ServerProcess, wait_for

CLIENT_KEY = "sk-e2e-client-key"
"""Not a stillroom key (no ``sr-``), so the proxy passes it through upstream."""

CALL_HEADER = "x-e2e-call"
"""A header every test call carries, to find its request upstream and its bytes on the wire."""

CHAT_CATEGORIES = ("chat", "stream", "tools")
PASS_THROUGH_CATEGORIES = ("embeddings", "models", "files", "finetune")

# The proxy answers with its own Date and Server and never forwards cookies; the rest is framing.
_NOT_RELAYED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "set-cookie",
        "date",
        "server",
    }
)


def new_call_id() -> str:
    return uuid.uuid4().hex


def as_sent_through_proxy(interaction: Interaction) -> Interaction:
    """The recording, keyed by the request that reaches the upstream through the proxy and SDK.

    stillroom has one upstream base URL and always calls ``{base}/chat/completions``, so the
    Azure deployment path becomes ``/v1/chat/completions`` (its query is kept for reference).
    The SDK asks for base64 embeddings when no ``encoding_format`` is given, so a recording
    without one is matched by the body the SDK really sends.
    """
    if interaction.path.startswith("/openai/deployments/"):
        return dataclasses.replace(interaction, path="/v1/chat/completions")
    body = interaction.request_json()
    if interaction.path == "/v1/embeddings" and "encoding_format" not in body:
        sent = {**body, "encoding_format": "base64"}
        return dataclasses.replace(interaction, request_body=json.dumps(sent).encode())
    return interaction


def interactions(categories: tuple[str, ...]) -> list[Interaction]:
    """Every interaction recorded in these categories, in file order."""
    grouped = all_cassettes()
    return [
        as_sent_through_proxy(interaction)
        for category in categories
        for path in grouped[category]
        for interaction in load_cassette(path)
    ]


BARRIER_COMPLETION_ID = "chatcmpl-e2e-barrier"
BARRIER_REQUEST = {"model": "e2e-barrier", "messages": [{"role": "user", "content": "barrier"}]}
BARRIER = Interaction(
    method="POST",
    path="/v1/chat/completions",
    query="",
    request_body=json.dumps(BARRIER_REQUEST).encode(),
    status=200,
    reason="OK",
    response_headers=(("Content-Type", "application/json"),),
    response_body=json.dumps(
        {
            "id": BARRIER_COMPLETION_ID,
            "object": "chat.completion",
            "created": 1,
            "model": "e2e-barrier",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok", "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
        }
    ).encode(),
    source="e2e-barrier",
)
"""Not a recording: a chat completion whose capture shows the writer got past earlier work."""


# -- the client's side of the wire -------------------------------------------------------------


@dataclass
class WireResponse:
    """A response as it reached the client's transport: bytes still content-encoded."""

    status: int
    headers: httpx2.Headers
    body: bytearray = field(default_factory=bytearray)
    """Filled as the SDK reads the body."""


class _TeeStream(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, sink: bytearray) -> None:
        self._inner = inner
        self._sink = sink

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._sink.extend(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _AsyncTeeStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, sink: bytearray) -> None:
        self._inner = inner
        self._sink = sink

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._sink.extend(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class TeeTransport(httpx2.BaseTransport):
    """The SDK's own transport (httpx2), keeping a copy of each tagged response as it arrived."""

    def __init__(self) -> None:
        self._inner = httpx2.HTTPTransport()
        self.responses: dict[str, WireResponse] = {}

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        call_id = request.headers.get(CALL_HEADER)
        if call_id is None:
            return response
        assert isinstance(response.stream, httpx2.SyncByteStream)
        wire = self.responses[call_id] = WireResponse(response.status_code, response.headers)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_TeeStream(response.stream, wire.body),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


class AsyncTeeTransport(httpx2.AsyncBaseTransport):
    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.responses: dict[str, WireResponse] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        call_id = request.headers.get(CALL_HEADER)
        if call_id is None:
            return response
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        wire = self.responses[call_id] = WireResponse(response.status_code, response.headers)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_AsyncTeeStream(response.stream, wire.body),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def assert_headers_relayed(
    headers: httpx2.Headers, served: Interaction, *, skip: frozenset[str] = frozenset()
) -> None:
    """Every recorded header the proxy is meant to relay reached the client with its value."""
    expected = {
        name.lower(): value
        for name, value in served.response_headers
        if name.lower() not in _NOT_RELAYED | skip
    }
    assert {name: headers.get(name) for name in expected} == expected


# -- the proxy's store -------------------------------------------------------------------------


class CaptureStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def count(self) -> int:
        with session_scope(self._engine) as session:
            return count_captures(session=session)

    def newest(self) -> Capture | None:
        with session_scope(self._engine) as session:
            summaries = list_capture_summaries(session=session, limit=1)
            return get_capture(summaries[0]["id"], session=session) if summaries else None

    def newest_id_for(self, completion_id: str) -> str | None:
        with session_scope(self._engine) as session:
            capture = get_capture_by_completion_id(completion_id, session=session)
            return capture.id if capture is not None else None

    def wait_for_new(self, before: int) -> Capture:
        """The one capture written since the store held ``before`` captures."""
        wait_for(lambda: self.count() > before)
        assert self.count() == before + 1, "one chat completion makes exactly one capture"
        capture = self.newest()
        assert capture is not None
        return capture


@dataclass
class Stack:
    """One backend's replay upstream, stillroom server and store."""

    upstream: ReplayUpstream
    server: ServerProcess
    captures: CaptureStore

    def received(self, call_id: str) -> ReceivedRequest:
        """The request the upstream got for one test call, and the recording that answered."""
        found = [r for r in self.upstream.received if r.headers.get(CALL_HEADER) == call_id]
        assert len(found) == 1, f"{len(found)} upstream requests carry call {call_id}"
        assert found[0].interaction is not None, "the replay upstream had no recording for it"
        return found[0]

    def assert_nothing_captured_since(self, before: int) -> None:
        """No capture was made since the store held ``before``.

        The sink writes captures in submission order from one queue, so once a chat completion
        sent now is stored, anything submitted earlier has been stored too.
        """
        previous_barrier = self.captures.newest_id_for(BARRIER_COMPLETION_ID)
        response = httpx.post(
            self.server.v1 + "/chat/completions",
            json=BARRIER_REQUEST,
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
        assert response.status_code == 200, response.text
        wait_for(lambda: self.captures.newest_id_for(BARRIER_COMPLETION_ID) != previous_barrier)
        assert self.captures.count() == before + 1, "a pass-through call made a capture"


# -- what a capture must hold ------------------------------------------------------------------


def answer_of(completion: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a ``chat.completion`` a capture must keep: ids, every choice, usage."""
    return {
        "id": completion.get("id"),
        "model": completion.get("model"),
        "created": completion.get("created"),
        "choices": [
            {
                "index": choice["index"],
                "role": choice["message"].get("role"),
                "content": choice["message"].get("content"),
                "refusal": choice["message"].get("refusal"),
                "tool_calls": [
                    (call["id"], call["function"]["name"], call["function"]["arguments"])
                    for call in choice["message"].get("tool_calls") or []
                ],
                "finish_reason": choice.get("finish_reason"),
            }
            for choice in completion["choices"]
        ],
        "usage": completion.get("usage"),
    }


def fold_stream(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """``answer_of`` the completion a stream of chunks amounts to, folded independently.

    Text and refusal deltas concatenate; a tool call's id and name arrive whole (some servers
    repeat them) and its arguments in pieces, keyed by index; the last usage sent wins. Empty
    ids, models and zero timestamps (Azure's prompt-filter chunk) say nothing.
    """
    head: dict[str, Any] = {"id": None, "model": None, "created": None}
    choices: dict[int, dict[str, Any]] = {}
    calls: dict[int, dict[int, list[Any]]] = {}
    usage = None
    for chunk in chunks:
        for key in head:
            head[key] = head[key] or chunk.get(key) or None
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = choice["index"]
            state = choices.setdefault(index, _empty_choice(index))
            delta = choice.get("delta") or {}
            state["role"] = state["role"] or delta.get("role")
            for key in ("content", "refusal"):
                if delta.get(key) is not None:
                    state[key] = (state[key] or "") + delta[key]
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(index, {}).setdefault(call["index"], [None, None, ""])
                function = call.get("function") or {}
                slot[0] = slot[0] or call.get("id")
                slot[1] = slot[1] or function.get("name")
                slot[2] += function.get("arguments") or ""
            state["finish_reason"] = choice.get("finish_reason") or state["finish_reason"]
    for index, state in choices.items():
        state["tool_calls"] = [tuple(calls[index][i]) for i in sorted(calls.get(index, {}))]
    return {**head, "choices": [choices[i] for i in sorted(choices)], "usage": usage}


def _empty_choice(index: int) -> dict[str, Any]:
    return dict.fromkeys(("role", "content", "refusal", "finish_reason"), None) | {
        "index": index,
        "tool_calls": [],
    }


def stream_chunks(body: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of an SSE body, up to ``[DONE]``."""
    chunks = []
    for event in body.split(b"\n\n"):
        data = event.removeprefix(b"data: ")
        if data.strip() == b"[DONE]":
            break
        if data.strip():
            chunks.append(json.loads(data))
    return chunks


# -- pass-through calls ------------------------------------------------------------------------


@dataclass(frozen=True)
class SdkCall:
    """The SDK method that makes a recorded request, and the body it puts on the wire."""

    method: str
    """Dotted path on the client, e.g. ``fine_tuning.jobs.retrieve``."""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    json_body: Any = None
    upload: Mapping[str, tuple[str | None, bytes]] | None = None

    def bind(self, client: object) -> Callable[..., Any]:
        return cast("Callable[..., Any]", functools.reduce(getattr, self.method.split("."), client))


def multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form field name -> (file name, bytes) of a multipart body."""
    message = email.message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body,
        policy=email.policy.HTTP,
    )
    assert isinstance(message, email.message.EmailMessage)
    fields = {}
    for part in message.iter_parts():
        assert isinstance(part, email.message.EmailMessage)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        fields[name] = (part.get_filename(), payload)
    return fields


def sdk_call_for(interaction: Interaction) -> SdkCall:
    segments = unquote(interaction.path).removeprefix("/v1/").split("/")
    match interaction.method, segments:
        case "POST", ["embeddings"]:
            body = interaction.request_json()
            return SdkCall("embeddings.create", kwargs=body, json_body=body)
        case "GET", ["models"]:
            return SdkCall("models.list")
        case "GET", ["models", model]:
            return SdkCall("models.retrieve", (model,))
        case "DELETE", ["models", model]:
            return SdkCall("models.delete", (model,))
        case "POST", ["files"]:
            headers = {name.lower(): value for name, value in interaction.request_headers}
            fields = multipart_fields(headers["content-type"], interaction.request_body)
            purpose = fields["purpose"][1].decode()
            return SdkCall(
                "files.create", kwargs={"file": fields["file"], "purpose": purpose}, upload=fields
            )
        case "GET", ["files", file_id]:
            return SdkCall("files.retrieve", (file_id,))
        case "GET", ["files", file_id, "content"]:
            return SdkCall("files.content", (file_id,))
        case "DELETE", ["files", file_id]:
            return SdkCall("files.delete", (file_id,))
        case "POST", ["fine_tuning", "jobs"]:
            body = interaction.request_json()
            return SdkCall("fine_tuning.jobs.create", kwargs=body, json_body=body)
        case "GET", ["fine_tuning", "jobs"]:
            return SdkCall("fine_tuning.jobs.list")
        case "GET", ["fine_tuning", "jobs", job_id]:
            return SdkCall("fine_tuning.jobs.retrieve", (job_id,))
        case "GET", ["fine_tuning", "jobs", job_id, "events"]:
            return SdkCall("fine_tuning.jobs.list_events", (job_id,))
        case "POST", ["fine_tuning", "jobs", job_id, "cancel"]:
            return SdkCall("fine_tuning.jobs.cancel", (job_id,))
    raise AssertionError(f"no SDK call known for {interaction.method} {interaction.path}")
