"""Faults seen through the running server, driven by the real `openai` SDK.

An upstream that fails, stalls, cuts its stream or cannot be reached; a client that leaves
mid-stream; a database that refuses writes; requests that are malformed or unauthorised.
Each test proves what the client sees and what the store holds afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from storage import Capture
from tests.e2e._faults_helpers import (
    CHAT_ANSWER,
    CHAT_PATH,
    MESSAGES,
    MODEL,
    STREAM_ANSWER,
    Store,
    captures_locked,
    chat_recordings,
    content_of,
    create_stillroom_key,
    database_refusing,
    eventually,
    metric,
    spool_files,
    spool_lines,
)
from tests.replay import CutStream, Delay, EndlessStream, ErrorReply, ReplayUpstream
from tests.support import ServerProcess, free_port, running_server, wait_for

CLIENT_KEY = (
    "sk-proj-" + "faultsclient0123456789abcdef"
)  # split: a fake key, kept out of secret scanners
SERVER_UPSTREAM_KEY = (
    "sk-svcacct-" + "faultsserverupstream0123456789"
)  # split: a fake key, kept out of secret scanners
ADMIN_KEY = "admin-faults-0123456789abcdef"
MAX_REQUEST_BYTES = 2048
SERVER_ENV = {
    "STILLROOM_UPSTREAM_TIMEOUT_SECONDS": "0.5",
    "STILLROOM_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
    "STILLROOM_UPSTREAM_API_KEY": SERVER_UPSTREAM_KEY,
    "STILLROOM_ADMIN_KEY": ADMIN_KEY,
    # A write stuck on a lock gives up after this and the captures go to the spool.
    "STILLROOM_CAPTURE_WRITE_TIMEOUT_SECONDS": "1",
}


@dataclass
class Proxy:
    server: ServerProcess
    upstream: ReplayUpstream
    store: Store
    workdir: Path
    database_url: str

    def client(self, api_key: str = CLIENT_KEY, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.server.v1, api_key=api_key, max_retries=0, timeout=15, **options
        )

    def next_capture(self, before: int) -> Capture:
        """The one capture written since the store held ``before``."""
        wait_for(lambda: self.store.count() == before + 1)
        return self.store.newest()[0]


@pytest.fixture(scope="module")
def proxy(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("faults")
    with (
        ReplayUpstream(chat_recordings()) as upstream,
        running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=workdir,
            env=SERVER_ENV,
        ) as server,
    ):
        store = Store(server_database_url)
        try:
            yield Proxy(server, upstream, store, workdir, server_database_url)
        finally:
            store.dispose()


def _ask(client: openai.OpenAI) -> str | None:
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
    return completion.choices[0].message.content


def _body(err: openai.APIStatusError) -> dict[str, Any]:
    assert isinstance(err.body, dict), err.body
    return err.body


def _openai_error(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an OpenAI-shaped error response, checked for its four keys."""
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert set(payload) == {"error"}
    error: dict[str, Any] = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


# -- the upstream answers with an error ----------------------------------------------------


def test_upstream_500_reaches_the_client_unchanged_and_is_captured_with_its_body(
    proxy: Proxy,
) -> None:
    before = proxy.store.count()
    proxy.upstream.set_fault(CHAT_PATH, [ErrorReply.server_error(500)])

    with pytest.raises(openai.InternalServerError) as caught:
        _ask(proxy.client())

    message = "The server had an error while processing your request. Sorry about that!"
    err = caught.value
    assert err.status_code == 500
    assert err.request_id == "req_replay_500"
    assert _body(err) == {"message": message, "type": "server_error", "param": None, "code": None}
    capture = proxy.next_capture(before)
    assert capture.status_code == 500
    assert capture.error == {
        "message": message,
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert capture.error_kind is None
    assert capture.response is None
    assert capture.upstream_request_id == "req_replay_500"


def test_upstream_429_keeps_retry_after_and_request_id_and_is_captured(proxy: Proxy) -> None:
    before = proxy.store.count()
    proxy.upstream.set_fault(CHAT_PATH, [ErrorReply.rate_limited(retry_after=7)])

    with pytest.raises(openai.RateLimitError) as caught:
        _ask(proxy.client())

    err = caught.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "7"
    assert err.response.headers["x-request-id"] == "req_replay_429"
    assert _body(err)["code"] == "rate_limit_exceeded"
    capture = proxy.next_capture(before)
    assert capture.status_code == 429
    assert capture.error is not None
    assert capture.error["message"] == "Rate limit reached for requests (replayed)."
    assert capture.error["code"] == "rate_limit_exceeded"
    assert capture.upstream_request_id == "req_replay_429"


# -- the upstream stalls or cannot be reached ----------------------------------------------


def test_upstream_silent_past_the_timeout_is_an_openai_shaped_504_captured_as_timeout(
    proxy: Proxy,
) -> None:
    before = proxy.store.count()
    disconnects = proxy.upstream.disconnects
    proxy.upstream.set_fault(CHAT_PATH, [Delay(3.0)])

    with pytest.raises(openai.InternalServerError) as caught:
        _ask(proxy.client())

    err = caught.value
    assert err.status_code == 504
    assert _body(err) == {
        "message": "The upstream did not answer in time.",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_timeout",
    }
    capture = proxy.next_capture(before)
    assert capture.error_kind == "timeout"
    assert capture.status_code is None
    assert capture.abandoned is False
    assert capture.total_ms is not None
    assert 450 <= capture.total_ms < 3000
    # The proxy hung up on the stalled upstream instead of waiting it out.
    assert proxy.upstream.wait_for(lambda u: u.disconnects == disconnects + 1, within=5)


def test_unreachable_upstream_is_an_openai_shaped_502_captured_as_connection(
    proxy: Proxy, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with running_server(
        database_url=proxy.database_url, upstream_base_url=closed, workdir=tmp_path
    ) as server:
        client = openai.OpenAI(base_url=server.v1, api_key=CLIENT_KEY, max_retries=0)
        for stream in (False, True):
            before = proxy.store.count()

            with pytest.raises(openai.InternalServerError) as caught:
                client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream)

            err = caught.value
            assert err.status_code == 502
            body = _body(err)
            assert body["type"] == "upstream_error"
            assert body["code"] == "upstream_unreachable"
            assert body["param"] is None
            assert body["message"].startswith("Could not reach the upstream: Cannot connect")
            capture = proxy.next_capture(before)
            assert capture.error_kind == "connection"
            assert capture.status_code is None
            assert capture.stream is stream
            assert capture.error is not None
            assert capture.error["type"] == "connection"


# -- streams that end early ----------------------------------------------------------------


def test_stream_cut_by_the_upstream_breaks_the_client_and_keeps_the_partial_answer(
    proxy: Proxy,
) -> None:
    before = proxy.store.count()
    proxy.upstream.set_fault(CHAT_PATH, [CutStream(after_events=3)])
    received: list[str] = []
    stream = proxy.client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)

    with pytest.raises(openai.APIConnectionError) as caught:
        received.extend(chunk.choices[0].delta.content or "" for chunk in stream)

    # The client sees a broken body, never a stream that merely looks finished.
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert received == ["", "Hello", "!"]
    capture = proxy.next_capture(before)
    assert capture.error_kind == "stream_cut"
    assert capture.status_code == 200
    assert capture.abandoned is False
    assert content_of(capture) == "Hello!"
    assert capture.finish_reason is None
    assert capture.completion_id == "chatcmpl-8P7s3sDocXsBE8nhq60IMx3WFu4B8"


def test_client_leaving_mid_stream_is_captured_abandoned_and_the_upstream_is_hung_up_on(
    proxy: Proxy,
) -> None:
    before = proxy.store.count()
    disconnects = proxy.upstream.disconnects
    proxy.upstream.set_fault(CHAT_PATH, [EndlessStream(interval=0.02)])

    stream = proxy.client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    read = []
    for chunk in stream:
        read.append(chunk.choices[0].delta.content)
        if len(read) == 3:
            break
    stream.close()

    assert read == [".", ".", "."]
    assert proxy.upstream.wait_for(lambda u: u.disconnects == disconnects + 1, within=5)
    capture = proxy.next_capture(before)
    assert capture.abandoned is True
    assert capture.error_kind == "client_abandoned"
    assert capture.status_code == 200
    assert capture.completion_id == "chatcmpl-replay-endless"
    partial = content_of(capture)
    assert partial is not None
    assert len(partial) >= 3
    assert set(partial) == {"."}


# -- the database refuses or stalls --------------------------------------------------------


def test_database_refusing_writes_spools_every_capture_and_replays_them_all(
    proxy: Proxy,
) -> None:
    requests = 60
    before = proxy.store.count()
    spooled = metric(proxy.server, "stillroom_captures_spooled_total")
    replayed = metric(proxy.server, "stillroom_captures_replayed_total")
    client = proxy.client()

    with database_refusing(proxy.database_url):
        answers = [_ask(client) for _ in range(requests)]
        wait_for(lambda: spool_lines(proxy.workdir) == requests)
        # Each line is counted just after its fsync.
        wait_for(
            lambda: metric(proxy.server, "stillroom_captures_spooled_total") - spooled == requests
        )
        spooled_during = metric(proxy.server, "stillroom_captures_spooled_total") - spooled
        spool_size = sum(path.stat().st_size for path in spool_files(proxy.workdir))

    assert answers == [CHAT_ANSWER] * requests
    assert spooled_during == requests
    assert spool_size > requests * 200
    wait_for(lambda: proxy.store.count() == before + requests, timeout=20)
    # The spool file is counted as replayed once all its rows are stored, just after.
    wait_for(
        lambda: metric(proxy.server, "stillroom_captures_replayed_total") - replayed == requests
    )
    wait_for(lambda: spool_lines(proxy.workdir) == 0)
    replayed_rows = proxy.store.newest(limit=requests)
    assert len({capture.id for capture in replayed_rows}) == requests
    assert {content_of(capture) for capture in replayed_rows} == {CHAT_ANSWER}
    assert {capture.status_code for capture in replayed_rows} == {200}


def test_database_stalling_on_a_lock_spools_instead_of_queueing_in_memory(proxy: Proxy) -> None:
    requests = 20
    before = proxy.store.count()
    spooled = metric(proxy.server, "stillroom_captures_spooled_total")
    client = proxy.client()

    with captures_locked(proxy.database_url):
        answers = [_ask(client) for _ in range(requests)]
        spooled_in_time = eventually(
            lambda: metric(proxy.server, "stillroom_captures_spooled_total") - spooled == requests,
            timeout=4,
        )
    wait_for(lambda: proxy.store.count() == before + requests, timeout=20)

    assert answers == [CHAT_ANSWER] * requests
    assert spooled_in_time, "captures waited in memory for the lock instead of spooling"


# -- requests the proxy refuses itself -----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"model": "gpt-3.5-turbo", "messages": [', "application/json", 400, "invalid_json"),
        (b'[{"model": "gpt-3.5-turbo"}]', "application/json", 400, "invalid_json"),
        (b'{"model": "gpt-3.5-turbo"}', "text/plain", 415, "unsupported_content_type"),
        (
            b'{"model": "gpt-3.5-turbo", "pad": "' + b"x" * MAX_REQUEST_BYTES + b'"}',
            "application/json",
            413,
            "request_too_large",
        ),
    ],
    ids=["malformed-json", "json-array", "text-plain", "oversized"],
)
def test_refused_body_is_an_openai_shaped_error_and_neither_forwarded_nor_captured(
    proxy: Proxy, content: bytes, content_type: str, status: int, code: str
) -> None:
    before = proxy.store.count()
    forwarded = len(proxy.upstream.received)

    response = httpx.post(
        proxy.server.v1 + "/chat/completions",
        content=content,
        headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": content_type},
    )

    assert response.status_code == status
    error = _openai_error(response)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] is None
    # A good request after it: once its capture is stored, the refused one had its chance.
    assert _ask(proxy.client()) == CHAT_ANSWER
    assert proxy.next_capture(before).status_code == 200
    assert len(proxy.upstream.received) == forwarded + 1


def test_oversized_body_from_the_sdk_is_a_413_and_not_forwarded(proxy: Proxy) -> None:
    forwarded = len(proxy.upstream.received)
    before = proxy.store.count()
    long_message: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "x" * (MAX_REQUEST_BYTES * 2)}
    ]

    with pytest.raises(openai.APIStatusError) as caught:
        proxy.client().chat.completions.create(model=MODEL, messages=long_message)

    assert caught.value.status_code == 413
    assert _body(caught.value)["type"] == "invalid_request_error"
    assert _body(caught.value)["code"] == "request_too_large"
    assert len(proxy.upstream.received) == forwarded
    assert proxy.store.count() == before


def test_missing_or_unknown_key_is_a_401_and_not_forwarded(proxy: Proxy) -> None:
    forwarded = len(proxy.upstream.received)
    unknown = proxy.client(api_key="sr-notakeythisproxyhasever0123456789")

    with pytest.raises(openai.AuthenticationError) as missing:
        proxy.client().chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            extra_headers={"Authorization": openai.Omit()},
        )
    with pytest.raises(openai.AuthenticationError) as wrong:
        _ask(unknown)

    assert _body(missing.value)["code"] == "missing_api_key"
    assert _body(missing.value)["type"] == "invalid_request_error"
    assert _body(wrong.value)["code"] == "invalid_api_key"
    assert "notakeythisproxy" not in _body(wrong.value)["message"]
    assert len(proxy.upstream.received) == forwarded


def test_stillroom_key_is_swapped_for_the_servers_upstream_key_and_recorded(
    proxy: Proxy,
) -> None:
    key_id, secret = create_stillroom_key(proxy.database_url, "faults-e2e", proxy.workdir)
    before = proxy.store.count()

    answer = _ask(proxy.client(api_key=secret))

    assert answer == CHAT_ANSWER
    sent = proxy.upstream.received[-1]
    assert sent.headers["authorization"] == f"Bearer {SERVER_UPSTREAM_KEY}"
    capture = proxy.next_capture(before)
    assert capture.api_key_id == key_id


def test_client_key_passes_through_and_is_recorded_only_as_a_fingerprint(proxy: Proxy) -> None:
    before = proxy.store.count()

    stream = proxy.client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)

    assert text == STREAM_ANSWER
    assert proxy.upstream.received[-1].headers["authorization"] == f"Bearer {CLIENT_KEY}"
    capture = proxy.next_capture(before)
    assert capture.api_key_id is not None
    assert capture.api_key_id.startswith("pt_")
    assert CLIENT_KEY[3:] not in capture.api_key_id
    assert content_of(capture) == STREAM_ANSWER
    assert capture.finish_reason == "stop"


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-the-admin-key", f"Bearer {CLIENT_KEY}"]
)
def test_admin_api_refuses_anything_but_the_admin_key(
    proxy: Proxy, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}

    response = httpx.get(proxy.server.base_url + "/admin/captures", headers=headers)

    assert response.status_code in (401, 403)
    error = _openai_error(response)
    assert error["code"] == "invalid_admin_key"


def test_admin_api_answers_the_admin_key(proxy: Proxy) -> None:
    before = proxy.store.count()
    _ask(proxy.client())
    newest = proxy.next_capture(before)

    response = httpx.get(
        proxy.server.base_url + "/admin/captures",
        params={"limit": 1},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 200
    [summary] = response.json()["data"]
    assert summary["id"] == newest.id
    assert summary["status_code"] == 200
    assert summary["api_key_id"] == newest.api_key_id
