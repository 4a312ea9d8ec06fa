"""The upstream: one pooled aiohttp session per upstream, and header hygiene both ways.

aiohttp rather than httpx for forwarding: on this path its pool costs a fraction of httpx's
per request. Bodies are never decompressed in transit (``auto_decompress=False``): clients get
the upstream's bytes and Content-Encoding as sent.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_DROP_FROM_REQUEST = _HOP_BY_HOP | {"authorization", "accept-encoding", "cookie", "content-length"}
# Content-Type travels as a header, not as a media type: the framework would add a charset.
_DROP_FROM_RESPONSE = _HOP_BY_HOP | {"content-length", "set-cookie", "date", "server"}
# Only encodings the capture writer can decode are offered upstream.
_DECODABLE = frozenset({"gzip", "deflate", "identity"})


class Upstream:
    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        api: str = "responses",
    ) -> None:
        self.name = name
        self.api = api
        """``chat`` when it speaks only chat completions: Responses calls are translated."""
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_seconds, sock_read=timeout_seconds
        )
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Upstream.open() was not awaited"
        return self._session

    def url(self, path: str, query: bytes = b"") -> str:
        """``path`` is what follows ``/v1`` on the proxy."""
        url = self.base_url + path
        return url + "?" + query.decode("latin-1") if query else url


def request_headers(
    raw: Iterable[tuple[bytes, bytes]], upstream_key: str | None, *, keep_length: bool = False
) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name == "accept-encoding":
            offered = [e.strip() for e in value.split(",")]
            kept = [e for e in offered if e.split(";")[0].strip().lower() in _DECODABLE]
            if kept:
                headers["accept-encoding"] = ", ".join(kept)
        elif name == "content-length" and keep_length:
            headers[name] = value
        elif name not in _DROP_FROM_REQUEST and not name.startswith("x-stillroom-"):
            headers.add(name, value)
    if upstream_key is not None:
        headers["authorization"] = f"Bearer {upstream_key}"
    return headers


def response_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower not in _DROP_FROM_RESPONSE:
            out[lower] = value
    return out
