"""The captures admin API over HTTP: filters in the query or a JSON body, pages, the whole
conversation, review actions, checked edits, bulk actions, and OpenAI-shaped refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from proxy import create_app
from storage import Feedback, add_feedback, list_capture_edits, session_scope
from tests.curation_rows import capture_id, capture_row, store, store_numbered
from tests.support import ADMIN, admin_settings, openai_error

Client = TestClient[Any]


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Client]:
    settings = admin_settings(database_url, tmp_path)
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


_error = openai_error


def test_query_parameters_filter_and_cursors_walk_every_page(
    client: Client, engine: Engine
) -> None:
    store_numbered(engine, 9, metadata_={"team": "a"})
    store(engine, [capture_row(10, metadata_={"team": "b"})])
    seen: list[str] = []
    params: dict[str, Any] = {"metadata.team": "a", "limit": 4}
    while True:
        page = client.get("/admin/captures", params=params, headers=ADMIN).json()
        seen += [item["id"] for item in page["data"]]
        assert page["has_more"] == (page["next_cursor"] is not None)
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [capture_id(n) for n in range(9, 0, -1)]
    oldest = client.get("/admin/captures", params={"order": "asc", "limit": 1}, headers=ADMIN)
    [summary] = oldest.json()["data"]
    assert summary["id"] == capture_id(1)
    assert "request" not in summary and summary["metadata"] == {"team": "a"}


def test_each_row_carries_the_conversation_preview_and_edited_filters_the_list(
    client: Client, engine: Engine
) -> None:
    store(engine, [capture_row(1, question="Where is my parcel?"), capture_row(2)])
    edit = {"message": {"role": "assistant", "content": "It left today."}, "author": "ana"}
    made = client.post(f"/admin/captures/{capture_id(1)}/edits", json=edit, headers=ADMIN)
    assert made.status_code == 201
    edited = client.get("/admin/captures", params={"edited": "true"}, headers=ADMIN).json()
    [row] = edited["data"]
    assert row["id"] == capture_id(1)
    assert (row["edited"], row["last_user_text"], row["answer_text"], row["answer_tools"]) == (
        True,
        "Where is my parcel?",
        "It left today.",
        [],
    )
    others = client.post(
        "/admin/captures/query", json={"filter": {"edited": False}}, headers=ADMIN
    ).json()
    assert [(r["id"], r["edited"], r["answer_text"]) for r in others["data"]] == [
        (capture_id(2), False, "a2")
    ]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("status=maybe", "status"),
        ("created_after=yesterday", "created_after"),
        ("colour=red", "colour"),
        ("has_tool_calls=perhaps", "has_tool_calls"),
        ("edited=perhaps", "edited"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("order=sideways", "order"),
    ],
)
def test_an_invalid_filter_is_a_400_naming_the_parameter(
    client: Client, query: str, param: str
) -> None:
    error = _error(client.get(f"/admin/captures?{query}", headers=ADMIN), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_a_json_filter_queries_the_same_list(client: Client, engine: Engine) -> None:
    store_numbered(engine, 3)
    store(engine, [capture_row(4, tags=["good"], review_status="approved")])
    body = {"filter": {"tags": ["good"], "status": ["approved"]}, "limit": 10}
    page = client.post("/admin/captures/query", json=body, headers=ADMIN).json()
    assert [item["id"] for item in page["data"]] == [capture_id(4)]
    assert page["next_cursor"] is None
    paged = client.post("/admin/captures/query", json={"limit": 2}, headers=ADMIN).json()
    assert paged["next_cursor"] == capture_id(3)
    bad = {"filter": {"status": ["maybe"]}}
    error = _error(client.post("/admin/captures/query", json=bad, headers=ADMIN), 400)
    assert error["param"] == "filter.status.0"
    unknown = {"filter": {"colour": "red"}}
    assert (
        _error(client.post("/admin/captures/query", json=unknown, headers=ADMIN), 400)["param"]
        == "filter.colour"
    )


def test_one_capture_comes_with_its_conversation_edits_and_feedback(
    client: Client, engine: Engine
) -> None:
    store_numbered(engine, 1)
    first = capture_id(1)
    with session_scope(engine) as session:
        add_feedback(
            Feedback(capture_id=first, completion_id="chatcmpl-1", thumbs=-1, comment="wrong"),
            session=session,
        )
    edit = {"message": {"role": "assistant", "content": "A1, right."}, "reason": "was wrong"}
    created = client.post(f"/admin/captures/{first}/edits", json=edit, headers=ADMIN)
    assert created.status_code == 201
    assert created.json()["author"] == "admin"
    detail = client.get(f"/admin/captures/{first}", headers=ADMIN).json()
    assert detail["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q1"},
    ]
    assert detail["original_answer"] == {"role": "assistant", "content": "a1"}
    assert detail["answer"] == {"role": "assistant", "content": "A1, right."}
    assert detail["current_edit"]["reason"] == "was wrong"
    assert [e["message"]["content"] for e in detail["edits"]] == ["A1, right."]
    assert [(f["thumbs"], f["comment"]) for f in detail["feedback_entries"]] == [(-1, "wrong")]
    assert detail["response"]["choices"][0]["message"]["content"] == "a1"
    assert detail["review_status"] == "pending" and detail["tags"] == []


def test_review_actions_change_the_capture(client: Client, engine: Engine) -> None:
    store_numbered(engine, 1)
    base = f"/admin/captures/{capture_id(1)}"
    for action, status in [("approve", "approved"), ("reject", "rejected"), ("pending", "pending")]:
        assert client.post(f"{base}/{action}", headers=ADMIN).json()["review_status"] == status
    tagged = client.post(f"{base}/tags", json={"add": ["good", "short"]}, headers=ADMIN)
    assert tagged.json()["tags"] == ["good", "short"]
    untagged = client.post(f"{base}/tags", json={"remove": ["short"]}, headers=ADMIN)
    assert untagged.json()["tags"] == ["good"]
    assert client.post(f"{base}/rating", json={"rating": 4}, headers=ADMIN).json()["rating"] == 4
    error = _error(client.post(f"{base}/rating", json={"rating": 6}, headers=ADMIN), 400)
    assert error["param"] == "rating"
    detail = client.get(base, headers=ADMIN).json()
    assert (detail["tags"], detail["rating"]) == (["good"], 4)


def test_a_bad_edit_is_a_400_and_stores_nothing(client: Client, engine: Engine) -> None:
    store_numbered(engine, 1)
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    edit = {"message": {"role": "assistant", "content": None, "tool_calls": [call]}}
    response = client.post(f"/admin/captures/{capture_id(1)}/edits", json=edit, headers=ADMIN)
    error = _error(response, 400)
    assert error["param"] == "message.tool_calls[0].function.arguments"
    assert error["code"] == "invalid_message"
    with session_scope(engine) as session:
        assert list_capture_edits(capture_id(1), session=session) == []


def test_an_unknown_capture_is_a_404(client: Client) -> None:
    for method, path in [
        ("GET", "/admin/captures/cap_missing"),
        ("POST", "/admin/captures/cap_missing/approve"),
        ("DELETE", "/admin/captures/cap_missing"),
    ]:
        error = _error(client.request(method, path, headers=ADMIN), 404)
        assert error["code"] == "capture_not_found"


def test_delete_removes_the_capture(client: Client, engine: Engine) -> None:
    store_numbered(engine, 2)
    answer = client.delete(f"/admin/captures/{capture_id(1)}", headers=ADMIN)
    assert answer.json() == {"id": capture_id(1), "deleted": True}
    _error(client.get(f"/admin/captures/{capture_id(1)}", headers=ADMIN), 404)
    assert client.get(f"/admin/captures/{capture_id(2)}", headers=ADMIN).status_code == 200


def test_bulk_previews_then_changes_what_the_filter_selects(client: Client, engine: Engine) -> None:
    store_numbered(engine, 6, metadata_={"team": "a"})
    store(engine, [capture_row(7, metadata_={"team": "b"})])
    request = {"filter": {"metadata": {"team": "a"}}, "action": "tag", "tags": ["batch-1"]}
    preview = client.post("/admin/captures/bulk", json={**request, "dry_run": True}, headers=ADMIN)
    assert preview.json() == {"action": "tag", "dry_run": True, "count": 6}
    assert client.get("/admin/captures?tag=batch-1", headers=ADMIN).json()["data"] == []
    done = client.post("/admin/captures/bulk", json=request, headers=ADMIN)
    assert done.json() == {"action": "tag", "dry_run": False, "count": 6}
    page = client.get("/admin/captures?tag=batch-1", headers=ADMIN).json()
    assert len(page["data"]) == 6
    approve = {"filter": {"tags": ["batch-1"]}, "action": "approve"}
    assert client.post("/admin/captures/bulk", json=approve, headers=ADMIN).json()["count"] == 6
    assert len(client.get("/admin/captures?status=pending", headers=ADMIN).json()["data"]) == 1


def test_bulk_refuses_bad_requests(client: Client) -> None:
    for body, param in [
        ({"filter": {}, "action": "explode"}, "action"),
        ({"action": "approve"}, "filter"),
        ({"filter": {}, "action": "tag"}, "tags"),
    ]:
        error = _error(client.post("/admin/captures/bulk", json=body, headers=ADMIN), 400)
        assert error["param"] == param


def test_the_captures_api_needs_the_admin_key(client: Client) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}):
        error = _error(client.get("/admin/captures", headers=headers), 401)
        assert error["code"] == "invalid_admin_key"
    bulk = {"filter": {}, "action": "delete"}
    assert client.post("/admin/captures/bulk", json=bulk).status_code == 401


def test_the_captures_api_is_documented(client: Client) -> None:
    paths = client.get("/admin/docs/openapi.json", headers=ADMIN).json()["paths"]
    assert {
        "/admin/captures",
        "/admin/captures/query",
        "/admin/captures/bulk",
        "/admin/captures/{capture_id}",
        "/admin/captures/{capture_id}/edits",
    } <= set(paths)
