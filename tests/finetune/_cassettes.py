"""The fine-tuning contract cassettes: how they were built, and how requests are matched.

``python -m tests.finetune._cassettes`` writes ``tests/cassettes/finetune/*.yaml`` once (they
are committed; tests never record). Two sources, never mixed inside one interaction:

- real recordings in ``tests/recordings/finetune/`` (Ruby VCR format), converted to vcrpy's
  format as they are, less cookies and account headers;
- for calls nobody recorded, the response examples of OpenAI's OpenAPI spec
  (``tests/recordings/spec/openapi.yaml``) and its ``Error`` schema.

A sent request matches a recorded one when method, host and path agree and every query
parameter and JSON field (recursively) or multipart part of the recorded request was sent
too: a recording made by another client (Ruby) pins what it sent, not the SDK's extras.
"""

from __future__ import annotations

import json
import re
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import vcr
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "tests" / "recordings"
CASSETTES = ROOT / "tests" / "cassettes" / "finetune"
API = "https://api.openai.com/v1"

_DROPPED_HEADERS = {
    "authorization",
    "set-cookie",
    "cookie",
    "openai-organization",
    "openai-project",
    "cf-ray",
    "alt-svc",
    "user-agent",
    "accept-encoding",
    "content-length",
    "transfer-encoding",
}


def _headers(headers: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: v for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS}


def ruby_interactions(path: Path) -> list[dict[str, Any]]:
    """A Ruby VCR cassette's interactions in vcrpy's format."""
    loaded = yaml.safe_load(path.read_text())
    converted = []
    for interaction in loaded["http_interactions"]:
        request, response = interaction["request"], interaction["response"]
        converted.append(
            {
                "request": {
                    "method": request["method"].upper(),
                    "uri": request["uri"],
                    "body": request["body"]["string"] or None,
                    "headers": _headers(request["headers"]),
                },
                "response": {
                    "status": response["status"],
                    "headers": _headers(response["headers"]),
                    "body": {"string": response["body"]["string"]},
                },
            }
        )
    return converted


def _interaction(
    method: str, path: str, status: int, body: Any, request_body: Any = None
) -> dict[str, Any]:
    messages = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
    return {
        "request": {
            "method": method,
            "uri": API + path,
            "body": None if request_body is None else json.dumps(request_body),
            "headers": {"Content-Type": ["application/json"]},
        },
        "response": {
            "status": {"code": status, "message": messages[status]},
            "headers": {"Content-Type": ["application/json"]},
            "body": {"string": json.dumps(body, indent=2)},
        },
    }


def _error(message: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """A body of the spec's ``Error`` schema."""
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def _spec_example(spec: dict[str, Any], path: str, verb: str, title: str | None = None) -> Any:
    examples = spec["paths"][path][verb]["x-oaiMeta"]["examples"]
    if isinstance(examples, list):
        examples = next(e for e in examples if e["title"] == title)
    # Some examples carry a trailing comma (the "Default" job creation): JSON has none.
    body = json.loads(re.sub(r",(\s*[}\]])", r"\1", examples["response"]))
    if isinstance(body, dict) and "has_more" in body:
        # The example is one page: no second page exists to be asked for.
        body["has_more"] = False
    return body


def _curl_body(spec: dict[str, Any], path: str, verb: str, title: str) -> Any:
    example = next(
        e for e in spec["paths"][path][verb]["x-oaiMeta"]["examples"] if e["title"] == title
    )
    found = re.search(r"-d '(.*)'", example["request"]["curl"], re.S)
    assert found is not None
    return json.loads(found.group(1))


def build_cassettes() -> dict[str, list[dict[str, Any]]]:
    recorded = RECORDINGS / "finetune"
    spec = yaml.load(  # the C loader of the safe subset: the spec is 3 MB
        (RECORDINGS / "spec" / "openapi.yaml").read_text(), Loader=yaml.CSafeLoader
    )
    job = "/fine_tuning/jobs/{fine_tuning_job_id}"
    dpo_request = _curl_body(spec, "/fine_tuning/jobs", "post", "DPO")
    closed = _error(
        "Fine-tuning is not available for your organization: self-serve fine-tuning no longer "
        "accepts new jobs.",
        "fine_tuning_unavailable",
    )
    still_processing = _error(
        "File file-abc123 is still being processed and is not ready to be used for fine-tuning. "
        "Please try again later.",
        "invalid_file_status",
        "training_file",
    )
    create = "/fine_tuning/jobs"
    return {
        "upload_file": ruby_interactions(
            recorded / "ruby_finetunes_files_upload_purpose_fine-tune.yml"
        ),
        "retrieve_file_processed": ruby_interactions(
            recorded / "ruby_finetunes_file_retrieve_processed.yml"
        ),
        "create_job": ruby_interactions(recorded / "ruby_finetunes_jobs_create.yml"),
        "list_jobs": ruby_interactions(recorded / "ruby_finetunes_jobs_list.yml"),
        "retrieve_job_404": ruby_interactions(recorded / "ruby_finetunes_jobs_retrieve_404.yml"),
        "events_404": ruby_interactions(recorded / "ruby_finetunes_jobs_events_404.yml"),
        "cancel_404": ruby_interactions(recorded / "ruby_finetunes_jobs_cancel_404.yml"),
        "retrieve_job_succeeded": [
            _interaction(
                "GET", "/fine_tuning/jobs/ftjob-abc123", 200, _spec_example(spec, job, "get")
            )
        ],
        "events": [
            _interaction(
                "GET",
                "/fine_tuning/jobs/ftjob-abc123/events",
                200,
                _spec_example(spec, job + "/events", "get"),
            )
        ],
        "checkpoints": [
            _interaction(
                "GET",
                "/fine_tuning/jobs/ftjob-abc123/checkpoints",
                200,
                _spec_example(spec, job + "/checkpoints", "get"),
            )
        ],
        "cancel": [
            _interaction(
                "POST",
                "/fine_tuning/jobs/ftjob-abc123/cancel",
                200,
                _spec_example(spec, job + "/cancel", "post"),
            )
        ],
        "create_job_dpo": [
            _interaction(
                "POST", create, 200, _spec_example(spec, create, "post", "DPO"), dpo_request
            )
        ],
        "create_job_closed": [_interaction("POST", create, 400, closed)],
        "create_job_file_still_processing": [
            _interaction("POST", create, 400, still_processing),
            _interaction("POST", create, 200, _spec_example(spec, create, "post", "Default")),
        ],
        "create_job_bad_model": [
            _interaction(
                "POST",
                create,
                400,
                _error(
                    "Model gpt-unknown is not available for fine-tuning or does not exist.",
                    "model_not_available",
                    "model",
                ),
            )
        ],
        "create_job_rate_limited": [
            _interaction(
                "POST",
                create,
                429,
                _error("Rate limit reached for requests", "rate_limit_exceeded"),
            )
        ],
    }


class _Readable(yaml.SafeDumper):
    """Multi-line bodies as literal blocks, so a reviewer reads them as they were sent."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and "\r" not in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Readable.add_representer(str, _string)


def render_cassettes() -> dict[str, str]:
    """File name -> text of every contract cassette, as ``write_cassettes`` writes them."""
    return {
        f"{name}.yaml": yaml.dump(
            {"interactions": interactions, "version": 1},
            Dumper=_Readable,
            sort_keys=False,
            allow_unicode=True,
            width=100,
        )
        for name, interactions in build_cassettes().items()
    }


def write_cassettes() -> None:
    CASSETTES.mkdir(parents=True, exist_ok=True)
    for name, body in render_cassettes().items():
        (CASSETTES / name).write_text(body)


def _text(body: Any) -> bytes:
    if body is None:
        return b""
    return body if isinstance(body, bytes) else str(body).encode()


def _multipart(request: Any) -> dict[str, tuple[str | None, bytes]] | None:
    content_type = next(
        (v for k, v in request.headers.items() if k.lower() == "content-type"), None
    )
    if isinstance(content_type, list):
        content_type = content_type[0]
    if not content_type or not content_type.startswith("multipart/"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + _text(request.body)
    )
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return parts


def _contains(sent: Any, recorded: Any) -> bool:
    if isinstance(recorded, dict):
        return isinstance(sent, dict) and all(
            key in sent and _contains(sent[key], value) for key, value in recorded.items()
        )
    return bool(sent == recorded)


def recorded_query(sent: Any, recorded: Any) -> None:
    wanted = set(parse_qsl(urlsplit(recorded.uri).query))
    assert wanted <= set(parse_qsl(urlsplit(sent.uri).query))


def recorded_body(sent: Any, recorded: Any) -> None:
    expected = _text(recorded.body)
    if not expected.strip():
        return
    parts = _multipart(recorded)
    if parts is not None:
        got = _multipart(sent) or {}
        assert all(got.get(name) == value for name, value in parts.items())
        return
    # An empty body sent (a bodiless POST) pins nothing, as a recorded "{}" does.
    assert _contains(json.loads(_text(sent.body) or b"{}"), json.loads(expected))


def contract_vcr() -> vcr.VCR:
    """Replays only: a request no cassette holds fails the test."""
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="none",
        match_on=["method", "host", "path", "recorded_query", "recorded_body"],
        filter_headers=["authorization", "openai-organization", "openai-project", "cookie"],
        filter_query_parameters=["api_key"],
        decode_compressed_response=True,
    )
    recorder.register_matcher("recorded_query", recorded_query)
    recorder.register_matcher("recorded_body", recorded_body)
    return recorder


if __name__ == "__main__":
    write_cassettes()
