"""What a hostile or unlucky client sends, against a running `stillroom serve` on each store:
nothing it sends stops capture, and bad input is a 4xx in OpenAI's error shape.

A request nested deeper than JSON columns allow, and one whose tool call is not an object,
are quarantined and the next hundred requests are all captured; text with U+0000 and
oversize identifiers are stored; NUL in a path or query, a non-boolean ``stream`` and the
admin documentation without the admin key are refused; a gzip request body is accepted and
captured decoded.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest

from storage import Capture, get_capture, session_scope
from tests.e2e._faults_helpers import (
    CHAT_PATH,
    MESSAGES,
    MODEL,
    Store,
    chat_recordings,
    metric,
)
from tests.replay import EndlessStream, ReplayUpstream
from tests.support import ServerProcess, running_server, wait_for

CLIENT_KEY = "sk-proj-" + "hostileclient0123456789abcdef"  # split: a fake key
ADMIN_KEY = "admin-hostile-0123456789abcdef"
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


@dataclass
class Proxy:
    server: ServerProcess
    store: Store

    def post_chat(self, body: bytes, **headers: str) -> httpx.Response:
        return httpx.post(
            self.server.base_url + CHAT_PATH,
            content=body,
            headers={**AUTH, "content-type": "application/json", **headers},
            timeout=15,
        )

    def capture(self, capture_id: str) -> Capture:
        with session_scope(self.store.engine) as session:
            found = get_capture(capture_id, session=session)
        assert found is not None
        return found


@pytest.fixture(scope="module")
def proxy(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("hostile")
    with (
        ReplayUpstream(chat_recordings()) as upstream,
        running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=workdir,
            env={"STILLROOM_ADMIN_KEY": ADMIN_KEY},
        ) as server,
    ):
        store = Store(server_database_url)
        try:
            yield Proxy(server, store)
        finally:
            store.dispose()


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"end": True}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_unstorable_requests_are_quarantined_and_the_next_hundred_are_all_captured(
    proxy: Proxy,
) -> None:
    before = proxy.store.count()
    quarantined_before = metric(proxy.server, "stillroom_captures_quarantined_total")
    deep = {"model": MODEL, "messages": [{"role": "user", "content": "hi", "x": nested(300)}]}
    bad_tools = {
        "model": MODEL,
        "messages": [
            *MESSAGES,
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": 1}]},
        ],
    }
    for body in (deep, bad_tools):
        # orjson refuses to write 300 levels; the stdlib writes what a client could send.
        assert proxy.post_chat(json.dumps(body).encode()).status_code == 200
    client = openai.OpenAI(base_url=proxy.server.v1, api_key=CLIENT_KEY, max_retries=0)
    answers = [
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
        .choices[0]
        .message.content
        for _ in range(100)
    ]

    wait_for(lambda: proxy.store.count() == before + 102, timeout=30)
    assert len(answers) == 100
    assert metric(proxy.server, "stillroom_captures_quarantined_total") - quarantined_before == 2
    captures = proxy.store.newest(102)
    quarantined = [c for c in captures if c.tags == ["quarantined"]]
    assert len(quarantined) == 2
    assert {c.review_status for c in quarantined} == {"rejected"}
    normal = [c for c in captures if c.tags == []]
    assert len(normal) == 100
    assert all(c.response is not None for c in normal)
    ready = httpx.get(proxy.server.base_url + "/readyz", timeout=5).json()
    assert ready["status"] == "ready"


def test_text_with_nul_and_oversize_identifiers_is_stored_and_traffic_goes_on(
    proxy: Proxy,
) -> None:
    before = proxy.store.count()
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello!\u0000"}],
        "user": "u\u0000" * 450,
        "metadata": {"team\u0000": "a\u0000b"},
    }
    assert proxy.post_chat(orjson.dumps(body)).status_code == 200
    long_model = {"model": "m" * 250, "messages": MESSAGES}
    assert proxy.post_chat(orjson.dumps(long_model)).status_code == 200
    client = openai.OpenAI(base_url=proxy.server.v1, api_key=CLIENT_KEY, max_retries=0)
    for _ in range(20):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)

    wait_for(lambda: proxy.store.count() == before + 22, timeout=30)
    captures = proxy.store.newest(22)
    assert [c.tags for c in captures] == [[]] * 22
    with_nul, with_long_model = captures[-1], captures[-2]
    assert with_nul.request["messages"][0]["content"] == "Hello!"
    assert with_nul.user == "u" * 400
    assert with_nul.request["user"] == "u" * 450
    assert with_nul.metadata_ == {"team": "ab"}
    assert with_long_model.requested_model == "m" * 200
    assert with_long_model.request["model"] == "m" * 250


def test_a_gzip_request_body_is_forwarded_and_captured_decoded(proxy: Proxy) -> None:
    before = proxy.store.count()
    body = orjson.dumps({"model": MODEL, "messages": MESSAGES, "metadata": {"via": "gzip"}})

    response = proxy.post_chat(gzip.compress(body), **{"content-encoding": "gzip"})

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    wait_for(lambda: proxy.store.count() == before + 1)
    [capture] = proxy.store.newest(1)
    assert capture.metadata_ == {"via": "gzip"}
    assert capture.request["messages"] == MESSAGES


def test_a_string_stream_flag_is_refused_as_openai_does_and_not_captured(proxy: Proxy) -> None:
    before = proxy.store.count()
    body = orjson.dumps({"model": MODEL, "messages": MESSAGES, "stream": "true"})

    response = proxy.post_chat(body)

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Invalid type for 'stream': expected a boolean, but got a string instead.",
            "type": "invalid_request_error",
            "param": "stream",
            "code": "invalid_type",
        }
    }
    assert proxy.store.count() == before


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/chat/completions?model=gpt%00", AUTH),
        ("/v1/chat/completions/chatcmpl-%00", AUTH),
        ("/admin/datasets?name=a%00b", {"authorization": f"Bearer {ADMIN_KEY}"}),
        ("/admin/captures/cap_%00", {"authorization": f"Bearer {ADMIN_KEY}"}),
        ("/admin/keys?x=%00", {"authorization": f"Bearer {ADMIN_KEY}"}),
    ],
)
def test_a_nul_byte_in_a_path_or_query_is_a_400(
    proxy: Proxy, path: str, headers: dict[str, str]
) -> None:
    response = httpx.get(proxy.server.base_url + path, headers=headers, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_character"


def test_nul_in_a_json_body_of_feedback_is_not_a_5xx(proxy: Proxy) -> None:
    response = httpx.post(
        proxy.server.base_url + "/v1/feedback",
        json={"completion_id": "chatcmpl-\u0000", "rating": "positive"},
        headers=AUTH,
        timeout=5,
    )
    assert 400 <= response.status_code < 500
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", ["/admin/docs", "/admin/docs/openapi.json", "/admin/docs/swagger"])
def test_the_admin_docs_need_the_admin_key(proxy: Proxy, path: str) -> None:
    url = proxy.server.base_url + path
    refused = httpx.get(url, timeout=5)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_admin_key"
    wrong = httpx.get(url, headers={"authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    allowed = httpx.get(url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
    assert allowed.status_code == 200


def test_a_client_that_stops_reading_a_stream_is_cut_off_and_captured_abandoned(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    big = "." * 65536
    event = (
        b'data: {"id":"chatcmpl-slow-reader","object":"chat.completion.chunk","created":0,'
        b'"model":"replay-endless","choices":[{"index":0,"delta":{"content":"'
        + big.encode()
        + b'"},"finish_reason":null}]}\n\n'
    )
    workdir = tmp_path_factory.mktemp("slow-reader")
    database_url = f"sqlite:///{workdir / 'stillroom.db'}"
    with (
        ReplayUpstream(chat_recordings(), fault=EndlessStream(interval=0.001, event=event)) as up,
        running_server(
            database_url=database_url,
            upstream_base_url=up.base_url,
            workdir=workdir,
            env={"STILLROOM_CLIENT_WRITE_TIMEOUT_SECONDS": "1"},
        ) as server,
    ):
        body = orjson.dumps({"model": MODEL, "messages": MESSAGES, "stream": True})
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.socket() as reader:
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.connect(("127.0.0.1", port))
            reader.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                + f"authorization: Bearer {CLIENT_KEY}\r\n".encode()
                + b"content-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            # It reads nothing: the proxy's writes back up until it gives up on the client.
            assert up.wait_for(lambda u: u.disconnects == 1, within=60)
        store = Store(database_url)
        try:
            wait_for(lambda: store.count() == 1, timeout=30)
            [capture] = store.newest(1)
        finally:
            store.dispose()
        log = server.log()
    assert capture.abandoned is True
    assert capture.error_kind == "client_abandoned"
    assert "client read nothing for 1 s; cut off (/v1/chat/completions)" in log
