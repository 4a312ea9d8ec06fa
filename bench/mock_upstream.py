"""A deliberately fast fake OpenAI upstream: a raw asyncio Protocol speaking HTTP/1.1.

Run as ``python -m bench.mock_upstream --port 0``; it prints ``READY <port>`` once listening
and serves until SIGTERM/SIGINT. Every answer is precomputed bytes, so the mock costs a few
microseconds per request and is not what a benchmark measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from typing import Any, cast

_MODEL = "gpt-4o-mini-2024-07-18"
_CREATED = 1_700_000_000
_COMPLETION_ID = "chatcmpl-BENCHmock0000000000000000001"
_REPLY = (
    "Hello! How can I help you today? This reply comes from the benchmark mock, "
    "which answers at once."
)
_REPLY_WORDS = _REPLY.split(" ")
_STREAM_CONTENT_CHUNKS = 18


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _usage() -> dict[str, Any]:
    return {
        "prompt_tokens": 9,
        "completion_tokens": 24,
        "total_tokens": 33,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_body() -> bytes:
    """The fixed non-streaming chat.completion (about 600 bytes)."""
    return _dumps(
        {
            "id": _COMPLETION_ID,
            "object": "chat.completion",
            "created": _CREATED,
            "model": _MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": _REPLY,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_bench0001",
        }
    )


def _content_pieces() -> list[str]:
    per_chunk = max(1, -(-len(_REPLY_WORDS) // _STREAM_CONTENT_CHUNKS))
    pieces = []
    for start in range(0, len(_REPLY_WORDS), per_chunk):
        words = _REPLY_WORDS[start : start + per_chunk]
        pieces.append((" " if start else "") + " ".join(words))
    return pieces


def stream_events(include_usage: bool) -> list[bytes]:
    """The SSE events of a streamed answer: role, content deltas, finish, [usage], [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": _COMPLETION_ID,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": _MODEL,
            "service_tier": "default",
            "system_fingerprint": "fp_bench0001",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    payloads = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    payloads += [chunk({"content": piece}, None) for piece in _content_pieces()]
    payloads.append(chunk({}, "stop"))
    if include_usage:
        usage_chunk = chunk({}, None)
        usage_chunk["choices"] = []
        usage_chunk["usage"] = _usage()
        payloads.append(usage_chunk)
    events = [b"data: " + _dumps(payload) + b"\n\n" for payload in payloads]
    events.append(b"data: [DONE]\n\n")
    return events


def _fixed_response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "x-request-id: req_benchmock\r\n"
        "openai-processing-ms: 1\r\n"
        "\r\n"
    )
    return head.encode() + body


def _chunked_response(events: list[bytes]) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream; charset=utf-8\r\n"
        "Transfer-Encoding: chunked\r\n"
        "Cache-Control: no-cache\r\n"
        "x-request-id: req_benchmock\r\n"
        "openai-processing-ms: 1\r\n"
        "\r\n"
    )
    frames = [b"%x\r\n%s\r\n" % (len(event), event) for event in events]
    return head.encode() + b"".join(frames) + b"0\r\n\r\n"


_MODELS_BODY = _dumps(
    {
        "object": "list",
        "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": _CREATED, "owned_by": "system"},
            {"id": "gpt-4o", "object": "model", "created": _CREATED, "owned_by": "system"},
        ],
    }
)
_NOT_FOUND_BODY = _dumps(
    {
        "error": {
            "message": "Unknown path on the benchmark mock.",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    }
)

COMPLETION_RESPONSE = _fixed_response("200 OK", "application/json", completion_body())
STREAM_RESPONSE = _chunked_response(stream_events(include_usage=False))
STREAM_WITH_USAGE_RESPONSE = _chunked_response(stream_events(include_usage=True))
MODELS_RESPONSE = _fixed_response("200 OK", "application/json", _MODELS_BODY)
NOT_FOUND_RESPONSE = _fixed_response("404 Not Found", "application/json", _NOT_FOUND_BODY)
BAD_REQUEST_RESPONSE = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def choose_response(method: bytes, path: bytes, body: bytes) -> bytes:
    """The precomputed bytes answering one request."""
    route = path.split(b"?", 1)[0]
    if method == b"POST" and route == b"/v1/chat/completions":
        if b'"stream": true' in body or b'"stream":true' in body:
            if b'"include_usage": true' in body or b'"include_usage":true' in body:
                return STREAM_WITH_USAGE_RESPONSE
            return STREAM_RESPONSE
        return COMPLETION_RESPONSE
    if method == b"GET" and route == b"/v1/models":
        return MODELS_RESPONSE
    return NOT_FOUND_RESPONSE


def _decode_chunked(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body beginning at start; None until it is complete."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        data_start = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 4
        if len(buffer) < data_start + size + 2:
            return None
        body += buffer[data_start : data_start + size]
        position = data_start + size + 2


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests may arrive pipelined or split."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and self._serve_one():
            pass

    def _serve_one(self) -> bool:
        """Answer the first complete request in the buffer; False when none is complete."""
        transport = self._transport
        assert transport is not None
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        lines = bytes(self._buffer[:head_end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            transport.write(BAD_REQUEST_RESPONSE)
            transport.close()
            return False
        method, path, version = parts
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        body_start = head_end + 4
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            decoded = _decode_chunked(self._buffer, body_start)
            if decoded is None:
                return False
            body, consumed = decoded
        else:
            length = int(headers.get(b"content-length", b"0"))
            consumed = body_start + length
            if len(self._buffer) < consumed:
                return False
            body = bytes(self._buffer[body_start:consumed])
        del self._buffer[:consumed]
        connection = headers.get(b"connection", b"")
        keep_alive = (
            b"keep-alive" in connection if version == b"HTTP/1.0" else b"close" not in connection
        )
        transport.write(choose_response(method, path, body))
        if not keep_alive:
            transport.close()
            return False
        return True


async def serve(host: str, port: int, announce: Callable[[int], None]) -> None:
    """Listen until SIGTERM or SIGINT; announce(port) once the socket is bound."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=1024)
    bound_port = int(server.sockets[0].getsockname()[1])
    announce(bound_port)
    async with server:
        await stop.wait()


def _announce(port: int) -> None:
    print(f"READY {port}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fast mock OpenAI upstream for the benchmark.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    coroutine = serve(args.host, args.port, _announce)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
