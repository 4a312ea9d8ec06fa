"""The Responses API recordings in ``tests/recordings/responses`` as plain `Interaction`s.

Besides the VCR and vcrpy YAML that ``_cassettes`` reads, two more recorders wrote them:

- openai-dotnet's test proxy (``dotnet_*.json``): ``Entries[]`` with ``RequestBody`` and
  ``ResponseBody`` as parsed JSON, and an SSE body as a list of its lines;
- pydantic-ai's vcrpy serializer (``pydanticai_*.yaml``): ``parsed_body`` instead of ``body``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ._cassettes import Interaction, load_cassette

RESPONSES_DIR = Path(__file__).resolve().parents[1] / "recordings" / "responses"


def responses_recording(name: str) -> list[Interaction]:
    """Every exchange of one recording, in order: ``responses_recording("ruby_…yml")``."""
    path = RESPONSES_DIR / name
    if path.suffix == ".json":
        return _session_record(path)
    if name.startswith("pydanticai_"):
        return _parsed_body_cassette(path)
    return load_cassette(path)


def _json_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":")).encode()


def _session_record(path: Path) -> list[Interaction]:
    document = json.loads(path.read_bytes())
    interactions = []
    for index, entry in enumerate(document["Entries"]):
        url = urlsplit(entry["RequestUri"])
        headers = tuple((str(k), str(v)) for k, v in entry["ResponseHeaders"].items())
        body = entry["ResponseBody"]
        raw = "".join(body).encode() if isinstance(body, list) else _json_bytes(body)
        interactions.append(
            Interaction(
                method=entry["RequestMethod"].upper(),
                path=url.path,
                query=url.query,
                request_body=_json_bytes(entry["RequestBody"]),
                status=int(entry["StatusCode"]),
                reason="",
                response_headers=headers,
                response_body=raw,
                source=f"{path.name}#{index}",
            )
        )
    return interactions


def _parsed_body_cassette(path: Path) -> list[Interaction]:
    document = yaml.safe_load(path.read_bytes())
    interactions = []
    for index, entry in enumerate(document["interactions"]):
        request, response = entry["request"], entry["response"]
        url = urlsplit(request["uri"])
        headers = tuple(
            (str(k), str(v))
            for k, values in (response.get("headers") or {}).items()
            for v in (values if isinstance(values, list) else [values])
        )
        status = response["status"]
        body = response.get("parsed_body", response.get("body"))
        interactions.append(
            Interaction(
                method=str(request["method"]).upper(),
                path=url.path,
                query=url.query,
                request_body=_json_bytes(request.get("parsed_body", request.get("body"))),
                status=int(status["code"] if isinstance(status, dict) else status),
                reason="",
                response_headers=headers,
                response_body=_json_bytes(body),
                source=f"{path.name}#{index}",
            )
        )
    return interactions
