"""What the replay server can do instead of answering faithfully.

Each fault is a frozen value; `ReplayUpstream` takes one per server, one per path, or a
sequence consumed one request at a time (see `FaultPlan`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = ["CutStream", "Delay", "EndlessStream", "ErrorReply", "Fault", "FaultPlan"]

_ENDLESS_EVENT = (
    b'data: {"id":"chatcmpl-replay-endless","object":"chat.completion.chunk","created":0,'
    b'"model":"replay-endless","choices":[{"index":0,"delta":{"content":"."},'
    b'"finish_reason":null}]}\n\n'
)


@dataclass(frozen=True)
class ErrorReply:
    """Answer with `status` and an OpenAI-shaped error body instead of the recording."""

    status: int
    message: str = "Replayed upstream fault."
    type: str = "server_error"
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent as given, e.g. `{"retry-after": "1"}`."""
    raw_body: bytes | None = None
    """Sent instead of the JSON error, e.g. an HTML page from a broken load balancer."""

    @classmethod
    def rate_limited(cls, retry_after: float = 1) -> ErrorReply:
        return cls(
            429,
            "Rate limit reached for requests (replayed).",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": f"{retry_after:g}", "x-request-id": "req_replay_429"},
        )

    @classmethod
    def server_error(cls, status: int = 500) -> ErrorReply:
        return cls(
            status,
            "The server had an error while processing your request. Sorry about that!",
            headers={"x-request-id": f"req_replay_{status}"},
        )

    def body(self) -> bytes:
        if self.raw_body is not None:
            return self.raw_body
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` before answering normally; gives up early if the client leaves."""

    seconds: float


@dataclass(frozen=True)
class CutStream:
    """Send the first `after_events` SSE events, then close the connection mid-body.

    The chunked body never gets its terminating chunk, so a client sees an incomplete read.
    Applies to the recording the request matches (gzip bodies are sent decoded); a request
    that matches nothing still gets the usual 404.
    """

    after_events: int


@dataclass(frozen=True)
class EndlessStream:
    """A 200 `text/event-stream` that sends `event` every `interval` seconds until the
    client goes away, which is then counted in `ReplayUpstream.disconnects`."""

    interval: float = 0.05
    event: bytes = _ENDLESS_EVENT


Fault: TypeAlias = ErrorReply | Delay | CutStream | EndlessStream
FaultPlan: TypeAlias = Fault | Sequence[Fault | None]
"""One fault for every request, or one per request in order (`None` = answer normally);
once a sequence is used up, requests are answered normally."""
