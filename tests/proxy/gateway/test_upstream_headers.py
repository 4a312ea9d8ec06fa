"""What the proxy sends upstream and returns to the client, header by header."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.gateway._upstream import request_headers, response_headers


def raw(**headers: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]


def test_upstream_key_replaces_the_client_authorization() -> None:
    headers = request_headers(
        raw(authorization="Bearer sr-client", x_stainless_lang="python"), "sk-up"
    )
    assert headers["authorization"] == "Bearer sk-up"
    assert headers["x-stainless-lang"] == "python"


def test_hop_by_hop_length_and_cookies_are_not_forwarded() -> None:
    headers = request_headers(
        raw(
            host="proxy", connection="keep-alive", content_length="12", cookie="a=b", te="trailers"
        ),
        None,
    )
    assert dict(headers) == {}
    kept = request_headers(raw(content_length="12"), None, keep_length=True)
    assert kept["content-length"] == "12"


def test_only_decodable_encodings_are_offered_upstream() -> None:
    headers = request_headers(raw(accept_encoding="gzip, deflate, br, zstd"), None)
    assert headers["accept-encoding"] == "gzip, deflate"
    assert "accept-encoding" not in request_headers(raw(accept_encoding="br"), None)


def test_useful_response_headers_reach_the_client() -> None:
    upstream = CIMultiDict(
        [
            ("x-request-id", "req_123"),
            ("openai-processing-ms", "87"),
            ("x-ratelimit-remaining-requests", "99"),
            ("retry-after", "2"),
            ("content-encoding", "gzip"),
            ("content-length", "10"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", "__cf_bm=x"),
            ("content-type", "application/json"),
        ]
    )
    out = response_headers(CIMultiDictProxy(upstream))
    assert out == {
        "x-request-id": "req_123",
        "openai-processing-ms": "87",
        "x-ratelimit-remaining-requests": "99",
        "retry-after": "2",
        "content-encoding": "gzip",
        "content-type": "application/json",
    }
