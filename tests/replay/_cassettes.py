"""Read recorded HTTP traffic (Ruby VCR and vcrpy cassettes) into plain `Interaction`s.

Both recorders write YAML, but they disagree on almost every detail: the top-level key
(`http_interactions` vs `interactions`), where a body lives (`{string: ...}`,
`{base64_string: ...}`, a bare string, raw bytes), how binary is tagged (`!binary` vs
`!!binary`), and whether header values are lists. Everything here funnels those variants
into one shape, keeping response bytes exactly as they travelled on the wire.
"""

from __future__ import annotations

import ast
import base64
import gzip
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "CATEGORIES",
    "RECORDINGS_DIR",
    "CassetteError",
    "Interaction",
    "all_cassettes",
    "load_cassette",
    "recording",
    "split_sse_events",
]

# tests/replay/_cassettes.py -> parents[1] is tests/; SOURCES.md there names each file's origin.
RECORDINGS_DIR = Path(__file__).resolve().parents[1] / "recordings"

# Folders that hold cassettes; `spec/` and `finetune-data/` hold other kinds of fixture.
CATEGORIES = ("chat", "stream", "tools", "embeddings", "models", "files", "finetune")

_PY_BYTES_REPR = re.compile(r"""^b(['"]).*\1$""", re.DOTALL)


class CassetteError(ValueError):
    """A recording file that cannot be read as a cassette."""


@dataclass(frozen=True)
class Interaction:
    """One recorded request/response pair."""

    method: str
    """Upper-case HTTP method."""
    path: str
    """URL path only, e.g. `/v1/chat/completions`."""
    query: str
    """Raw query string without the `?`, empty when there was none."""
    request_body: bytes
    status: int
    reason: str
    response_headers: tuple[tuple[str, str], ...]
    """Every recorded response header in recorded order and spelling; repeats are kept."""
    response_body: bytes
    """Body bytes as on the wire: still gzip-compressed when `Content-Encoding: gzip`."""
    request_headers: tuple[tuple[str, str], ...] = ()
    source: str = field(default="", compare=False)
    """`file#index`, so a failing test can say which recording it was replaying."""

    def header(self, name: str) -> str | None:
        """First response header called `name` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.response_headers if k.lower() == wanted), None)

    @property
    def content_encoding(self) -> str:
        return (self.header("content-encoding") or "identity").strip().lower()

    @property
    def is_event_stream(self) -> bool:
        return (self.header("content-type") or "").lower().startswith("text/event-stream")

    def decoded_body(self) -> bytes:
        """The response body with its `Content-Encoding` undone."""
        encoding = self.content_encoding
        if encoding in ("identity", ""):
            return self.response_body
        if encoding in ("gzip", "x-gzip"):
            return gzip.decompress(self.response_body)
        if encoding == "deflate":
            return _inflate(self.response_body)
        raise CassetteError(f"{self.source}: cannot decode Content-Encoding {encoding!r}")

    def response_json(self) -> Any:
        return json.loads(self.decoded_body())

    def request_json(self) -> Any:
        """The request body parsed as JSON, or None when it is not JSON."""
        return _parse_json(self.request_body)

    def sse_events(self) -> list[bytes]:
        """The decoded body cut into SSE events, each keeping its trailing blank line."""
        return split_sse_events(self.decoded_body())


def split_sse_events(body: bytes) -> list[bytes]:
    """Cut an SSE body after every blank line; joining the parts gives `body` back."""
    events: list[bytes] = []
    start = 0
    while (end := body.find(b"\n\n", start)) != -1:
        events.append(body[start : end + 2])
        start = end + 2
    if start < len(body):
        events.append(body[start:])
    return events


def load_cassette(path: Path | str) -> list[Interaction]:
    """Every interaction recorded in one Ruby VCR or vcrpy YAML file, in file order."""
    path = Path(path)
    with path.open("rb") as stream:
        # _CassetteLoader is a SafeLoader subclass: it adds tags but never builds objects.
        document = yaml.load(stream, Loader=_CassetteLoader)
    if not isinstance(document, Mapping):
        raise CassetteError(f"{path}: top level is not a mapping")
    raw = document.get("http_interactions", document.get("interactions"))
    if not isinstance(raw, list):
        raise CassetteError(f"{path}: no http_interactions or interactions list")
    return [_interaction(entry, f"{path.name}#{index}") for index, entry in enumerate(raw)]


def all_cassettes(root: Path = RECORDINGS_DIR) -> dict[str, list[Path]]:
    """Recording files per category folder, sorted by name; missing folders map to []."""
    return {
        category: sorted(
            p for p in (root / category).glob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
        )
        for category in CATEGORIES
    }


def recording(relative: str, root: Path = RECORDINGS_DIR) -> list[Interaction]:
    """Shorthand for tests: `recording("chat/ruby_chat_gpt35.yml")`."""
    return load_cassette(root / relative)


class _CassetteLoader(yaml.SafeLoader):
    """SafeLoader that also reads the tags Ruby's Psych and old vcrpy versions emit."""


def _construct_ruby_binary(loader: yaml.SafeLoader, node: yaml.Node) -> bytes:
    # Psych writes non-UTF-8 strings as base64 under the local tag `!binary`.
    text = loader.construct_scalar(node)  # type: ignore[arg-type]
    return base64.b64decode("".join(str(text).split()))


def _construct_python_scalar(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    # vcrpy before 2.x on Python 2 wrote `!!python/unicode` and `!!python/str` scalars.
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        return str(value).encode("latin-1") if suffix == "bytes" else value
    return _construct_untagged(loader, node)


def _construct_untagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """Any other tag (`!ruby/object:...`, `!ruby/hash:...`): keep the plain YAML shape."""
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


def _construct_multi_untagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    return _construct_untagged(loader, node)


_CassetteLoader.add_constructor("!binary", _construct_ruby_binary)
_CassetteLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_python_scalar)
_CassetteLoader.add_multi_constructor("!ruby/", _construct_multi_untagged)
_CassetteLoader.add_constructor(None, _construct_untagged)


def _interaction(entry: Any, source: str) -> Interaction:
    if not isinstance(entry, Mapping):
        raise CassetteError(f"{source}: interaction is not a mapping")
    request, response = entry.get("request"), entry.get("response")
    if not isinstance(request, Mapping) or not isinstance(response, Mapping):
        raise CassetteError(f"{source}: interaction lacks request or response")
    url = urlsplit(str(request.get("uri", "")))
    status, reason = _status(response.get("status"), source)
    return Interaction(
        method=str(request.get("method", "GET")).upper(),
        path=url.path or "/",
        query=url.query,
        request_body=_body_bytes(request.get("body")),
        status=status,
        reason=reason,
        response_headers=tuple(_header_pairs(response.get("headers"))),
        response_body=_body_bytes(response.get("body")),
        request_headers=tuple(_header_pairs(request.get("headers"))),
        source=source,
    )


def _status(raw: Any, source: str) -> tuple[int, str]:
    if isinstance(raw, Mapping):
        code, reason = raw.get("code"), raw.get("message")
    else:
        code, reason = raw, None
    try:
        status = int(code)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise CassetteError(f"{source}: response has no status code ({raw!r})") from exc
    return status, "" if reason is None else str(reason)


def _body_bytes(raw: Any) -> bytes:
    if raw is None:
        return b""
    if isinstance(raw, Mapping):
        # Ruby VCR falls back to base64_string for bodies that are not valid UTF-8.
        if raw.get("base64_string") is not None:
            return base64.b64decode("".join(str(raw["base64_string"]).split()))
        return _body_bytes(raw.get("string"))
    if isinstance(raw, bytes | bytearray):
        return bytes(raw)
    text = str(raw)
    if _PY_BYTES_REPR.match(text):
        # Some hand-edited vcrpy cassettes hold `b'...'` reprs instead of !!binary.
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, bytes):
            return value
    return text.encode("utf-8")


def _header_pairs(raw: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(raw, Mapping):
        return
    for name, values in raw.items():
        for value in values if isinstance(values, list) else [values]:
            yield str(name), _header_text(value)


def _header_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, bool):
        # YAML 1.1 turns an unquoted `on`/`yes` into True; headers are text.
        return "true" if value else "false"
    return str(value)


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _inflate(data: bytes) -> bytes:
    # Servers disagree on whether "deflate" means zlib-wrapped or raw deflate.
    try:
        return zlib.decompress(data)
    except zlib.error:
        return zlib.decompress(data, -zlib.MAX_WBITS)
