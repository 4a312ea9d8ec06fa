"""An exchange becomes a capture row: bodies decoded, usage and ids lifted into columns."""

from __future__ import annotations

import gzip
import json

from proxy.gateway._capture import Exchange, build_row, new_capture_id
from tests.replay import recording


def test_gzip_response_from_a_recording_is_decoded_into_the_row() -> None:
    interaction = recording("chat/openllmetry_chat_gzip_body.yaml")[0]
    assert interaction.content_encoding == "gzip"
    exchange = Exchange(
        request=interaction.request_json(),
        api_key_id="pt_1",
        upstream="default",
        served_model="gpt-3.5-turbo",
        status_code=interaction.status,
        body=interaction.response_body,
        content_encoding="gzip",
        upstream_request_id=interaction.header("x-request-id"),
    )
    row = build_row(exchange)
    recorded = interaction.response_json()
    assert row["response"] == recorded
    assert row["completion_id"] == recorded["id"]
    assert row["total_tokens"] == recorded["usage"]["total_tokens"]
    assert row["finish_reason"] == recorded["choices"][0]["finish_reason"]
    assert row["requested_model"] == interaction.request_json()["model"]
    assert row["error"] is None


def test_upstream_error_body_is_kept_as_the_error() -> None:
    error = {
        "error": {
            "message": "Rate limit reached",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    row = build_row(
        Exchange(
            request={"model": "gpt-4o", "messages": []},
            api_key_id=None,
            upstream="default",
            served_model="gpt-4o",
            status_code=429,
            body=gzip.compress(json.dumps(error).encode()),
            content_encoding="gzip",
        )
    )
    assert row["response"] is None and row["completion_id"] is None
    assert row["error"] == error["error"]
    assert row["status_code"] == 429


def test_metadata_user_and_store_are_lifted_from_the_request() -> None:
    row = build_row(
        Exchange(
            request={"model": "m", "metadata": {"team": "a", "n": 3}, "store": True, "user": "u-1"},
            api_key_id="key_x",
            upstream="default",
            served_model="m",
        )
    )
    assert row["metadata_"] == {"team": "a", "n": "3"}
    assert (row["store"], row["user"], row["api_key_id"]) == (True, "u-1", "key_x")
    assert row["response"] is None and row["error"] is None


def test_failure_without_a_body_records_kind_and_message() -> None:
    exchange = Exchange(
        request={"model": "m"}, api_key_id=None, upstream="default", served_model="m"
    )
    exchange.error_kind = "timeout"
    exchange.error_message = "the upstream did not answer in time"
    row = build_row(exchange)
    assert row["error_kind"] == "timeout"
    assert row["error"] == {"message": "the upstream did not answer in time", "type": "timeout"}


def test_capture_ids_sort_by_creation() -> None:
    ids = [new_capture_id() for _ in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200
