"""/admin/validate and /admin/datasets/{id}/validation: the validator's report over HTTP, for
a posted JSONL file and for a dataset built from captures of real recorded conversations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from finetune import SplitRatios, create_dataset, prompt_hash
from proxy import create_app, load_settings
from storage import CaptureFilter, insert_captures, session_scope
from tests.replay._cassettes import RECORDINGS_DIR

DATA = RECORDINGS_DIR / "finetune-data"
ADMIN = {"Authorization": "Bearer admin-secret"}
JSONL = {**ADMIN, "Content-Type": "application/jsonl"}


def capture_of(example: dict[str, Any], n: int, tag: str) -> dict[str, Any]:
    """The capture a proxied call would have stored for this recorded training example."""
    *prompt, answer = example["messages"]
    request: dict[str, Any] = {"model": "gpt-4o-mini", "messages": prompt}
    for key in ("tools", "parallel_tool_calls"):
        if key in example:
            request[key] = example[key]
    return {
        "id": f"cap_{tag}_{n:03d}",
        "completion_id": f"chatcmpl-{tag}-{n}",
        "created_at": datetime(2025, 3, 1, tzinfo=UTC) + timedelta(seconds=n),
        "request": request,
        "response": {
            "id": f"chatcmpl-{tag}-{n}",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {**answer, "refusal": None},
                    "finish_reason": "tool_calls" if "tool_calls" in answer else "stop",
                }
            ],
        },
        "status_code": 200,
        "requested_model": "gpt-4o-mini",
        "served_model": "gpt-4o-mini",
        "finish_reason": "tool_calls" if "tool_calls" in answer else "stop",
        "metadata_": {},
        "review_status": "approved",
        "tags": [tag],
        "prompt_hash": prompt_hash(request),
        "has_tool_calls": "tool_calls" in answer,
    }


def build_dataset(engine: Engine, file: str, tag: str) -> str:
    examples = [orjson.loads(line) for line in (DATA / file).read_bytes().splitlines() if line]
    with session_scope(engine) as session:
        insert_captures([capture_of(e, n, tag) for n, e in enumerate(examples)], session=session)
    dataset = create_dataset(
        engine,
        tag,
        CaptureFilter(tags=[tag]),
        ratios=SplitRatios(train=1.0, validation=0.0, test=0.0),
    )
    return dataset.id


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient[Any]]:
    settings = load_settings(
        database_url=database_url,
        admin_key="admin-secret",
        spool_dir=tmp_path / "spool",
        upstream_base_url="http://127.0.0.1:9/v1",
        training_prices={"gpt-4o-mini-2024-07-18": 2.0},
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_posted_jsonl_file_gets_its_report(client: TestClient[Any]) -> None:
    body = (DATA / "ruby_sarcastic_chat.jsonl").read_bytes()
    response = client.post("/admin/validate", content=body, headers=JSONL)
    assert response.status_code == 200
    report = response.json()
    assert (report["passed"], report["format"], report["examples"]) == (True, "chat", 10)
    assert report["errors"] == []
    assert [w["code"] for w in report["warnings"]] == ["few_examples"]
    assert report["bytes"] == len(body)
    assert report["tokens_per_example"]["total"] == report["total_tokens"] > 0


def test_the_price_table_in_settings_prices_the_estimate(client: TestClient[Any]) -> None:
    body = (DATA / "ruby_sarcastic_chat.jsonl").read_bytes()
    cost = client.post("/admin/validate", content=body, headers=JSONL).json()["cost"]
    assert cost["usd_per_million_tokens"] == 2.0
    assert cost["estimated_usd"] == pytest.approx(cost["billed_tokens"] * 2.0 / 1e6)


def test_base_model_and_epochs_come_from_the_query(client: TestClient[Any]) -> None:
    body = (DATA / "cookbook_toy_chat_fine_tuning.jsonl").read_bytes()
    response = client.post(
        "/admin/validate?base_model=gpt-3.5-turbo-0613&epochs=2", content=body, headers=JSONL
    )
    report = response.json()
    assert (report["encoding"], report["token_limit"]) == ("cl100k_base", 4096)
    assert report["over_token_limit"] == [5]
    assert (report["cost"]["epochs"], report["cost"]["epochs_source"]) == (2, "given")
    assert report["cost"]["billed_tokens"] == 2 * 4306


def test_a_refused_file_is_still_a_200_with_the_reason(client: TestClient[Any]) -> None:
    body = (DATA / "batch_api_input.jsonl").read_bytes()
    response = client.post("/admin/validate", content=body, headers=JSONL)
    assert response.status_code == 200
    report = response.json()
    assert (report["passed"], report["format"]) == (False, "batch_api_input")
    assert report["error_counts"] == {"wrong_format": 1}


def test_a_json_body_that_is_no_dataset_reference_is_validated_as_data(
    client: TestClient[Any],
) -> None:
    line = (DATA / "ruby_sarcastic_chat.jsonl").read_bytes().splitlines()[0]
    response = client.post(
        "/admin/validate", content=line, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["error_counts"] == {"too_few_examples": 1}


def test_a_dataset_built_from_recorded_conversations_validates(
    client: TestClient[Any], engine: Engine
) -> None:
    dataset_id = build_dataset(engine, "ruby_sarcastic_chat.jsonl", "sarcastic")
    by_reference = client.post(
        "/admin/validate", json={"dataset_id": dataset_id, "split": "train"}, headers=ADMIN
    )
    assert by_reference.status_code == 200
    report = by_reference.json()
    assert (report["passed"], report["examples"]) == (True, 10)
    by_path = client.get(f"/admin/datasets/{dataset_id}/validation", headers=ADMIN)
    assert by_path.status_code == 200
    assert by_path.json() == report


def test_a_datasets_double_encoded_tool_arguments_are_flagged(
    client: TestClient[Any], engine: Engine
) -> None:
    dataset_id = build_dataset(
        engine, "cookbook_drone_training_function_calling_first8.jsonl", "drone"
    )
    report = client.get(f"/admin/datasets/{dataset_id}/validation", headers=ADMIN).json()
    assert report["examples"] == 8
    assert report["error_counts"] == {"double_encoded_arguments": 6, "too_few_examples": 1}


def test_an_unknown_dataset_is_a_404_in_openais_shape(client: TestClient[Any]) -> None:
    response = client.post("/admin/validate", json={"dataset_id": "ds_nope"}, headers=ADMIN)
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "not_found")
    assert client.get("/admin/datasets/ds_nope/validation", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    ("reference", "param"),
    [
        ({"dataset_id": "ds_x", "split": "everything"}, "split"),
        ({"dataset_id": "ds_x", "epochs": 0}, "epochs"),
        ({"dataset_id": "ds_x", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_dataset_reference_is_a_400_naming_the_field(
    client: TestClient[Any], reference: dict[str, Any], param: str
) -> None:
    response = client.post("/admin/validate", json=reference, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_bad_query_parameters_are_refused(client: TestClient[Any]) -> None:
    response = client.post("/admin/validate?epochs=0", content=b"{}", headers=JSONL)
    assert response.status_code == 400
    response = client.get("/admin/datasets/ds_x/validation?split=everything", headers=ADMIN)
    assert response.status_code == 400


def test_validation_needs_the_admin_key(client: TestClient[Any]) -> None:
    response = client.post(
        "/admin/validate", content=b"{}", headers={"Content-Type": "application/jsonl"}
    )
    assert response.status_code in (401, 403)
    assert "error" in response.json()


def test_the_routes_are_in_the_admin_docs(client: TestClient[Any]) -> None:
    paths = client.get("/admin/docs/openapi.json", headers=ADMIN).json()["paths"]
    assert "post" in paths["/admin/validate"]
    assert "get" in paths["/admin/datasets/{dataset_id}/validation"]


def test_a_file_larger_than_a_chat_body_is_still_validated(
    database_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        database_url=database_url,
        admin_key="admin-secret",
        spool_dir=tmp_path / "spool",
        upstream_base_url="http://127.0.0.1:9/v1",
        max_request_bytes=2048,
    )
    body = (DATA / "cookbook_drone_training_function_calling_first8.jsonl").read_bytes()
    assert len(body) > 20 * 2048
    with TestClient(create_app(settings)) as test_client:
        # curl's --data-binary sends form-encoded by default: the body is still the file.
        headers = {**ADMIN, "Content-Type": "application/x-www-form-urlencoded"}
        response = test_client.post("/admin/validate", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["bytes"] == len(body)
    assert response.json()["error_counts"]["double_encoded_arguments"] == 6
