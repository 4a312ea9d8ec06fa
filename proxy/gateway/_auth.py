"""Who is calling, and which key goes upstream on their behalf.

A bearer that starts with ``sr-`` is a stillroom key: it is checked against the stored hashes
and the server's upstream key is used. Any other bearer is the client's own upstream key and
passes through. Secrets are never logged or stored: a pass-through key is known to the store
only by a short fingerprint of its hash, which scopes the caller's stored completions.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from proxy._errors import AuthenticationFailed, PermissionDenied, ServiceUnavailable
from storage import KEY_PREFIX, database_unreachable, find_active_key, session_scope

log = logging.getLogger("stillroom.auth")

_CACHE_SECONDS = 30.0
_MISS_CACHE_SECONDS = 5.0
# While the database cannot be asked, a stale verdict is used and asked about again this often.
_RETRY_SECONDS = 2.0
# Pass-through callers remembered at most; past it the memory starts again (a key is cheap
# to fingerprint again, a process that grows with every key ever seen is not).
_PASSED_THROUGH_KEPT = 1024


@dataclass(frozen=True, slots=True)
class _Verdict:
    key_id: str | None
    """The key's id, or None for a secret that is unknown or revoked."""
    expires: float
    checked: float
    """When the database last gave this verdict."""


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str
    """A stillroom key's id, or ``pt_`` and a fingerprint for a passed-through key."""
    upstream_key: str | None


class Authenticator:
    def __init__(
        self,
        engine: Engine,
        *,
        upstream_key: str | None,
        allow_client_keys: bool,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = _CACHE_SECONDS,
        stale_seconds: float = 3600.0,
    ) -> None:
        self._cache_seconds = cache_seconds
        self._engine = engine
        self._upstream_key = upstream_key
        self._allow_client_keys = allow_client_keys
        self._clock = clock
        self._stale_seconds = stale_seconds
        self._cache: dict[str, _Verdict] = {}
        self._passed: dict[str, Caller] = {}
        self._database_down = False

    async def caller(self, authorization: str | None) -> Caller:
        secret = _bearer(authorization)
        if secret is None:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send 'Authorization: Bearer <key>' with a "
                "stillroom key or your own upstream key.",
                code="missing_api_key",
            )
        if not secret.startswith(KEY_PREFIX):
            if not self._allow_client_keys:
                raise AuthenticationFailed(
                    "This stillroom accepts only stillroom keys (sr-...).", code="invalid_api_key"
                )
            return self._passed_through(secret)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        key_id = await self._stillroom_key_id(secret, digest)
        if key_id is None:
            raise AuthenticationFailed(
                f"Incorrect stillroom key provided: {secret[:6]}****.", code="invalid_api_key"
            )
        if self._upstream_key is None:
            raise AuthenticationFailed(
                "stillroom has no upstream key configured (STILLROOM_UPSTREAM_API_KEY), "
                "so stillroom keys cannot be used; pass your own upstream key instead.",
                code="no_upstream_key",
            )
        return Caller(key_id=key_id, upstream_key=self._upstream_key)

    def _passed_through(self, secret: str) -> Caller:
        """The caller of a client's own upstream key, known by a fingerprint of its hash;
        remembered per key, so a key's every request does not hash it again."""
        caller = self._passed.get(secret)
        if caller is None:
            if len(self._passed) >= _PASSED_THROUGH_KEPT:
                self._passed.clear()
            digest = hashlib.sha256(secret.encode()).hexdigest()
            caller = self._passed[secret] = Caller(key_id="pt_" + digest[:16], upstream_key=secret)
        return caller

    async def _stillroom_key_id(self, secret: str, digest: str) -> str | None:
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached.expires > now:
            return cached.key_id
        try:
            key_id = await anyio.to_thread.run_sync(self._lookup, secret)
        except SQLAlchemyError as exc:
            if not database_unreachable(exc):
                raise
            return self._stale_verdict(digest, cached, now, exc)
        if self._database_down:
            self._database_down = False
            log.warning("stillroom keys are checked against the database again")
        ttl = (
            self._cache_seconds
            if key_id is not None
            else min(_MISS_CACHE_SECONDS, self._cache_seconds)
        )
        self._cache[digest] = _Verdict(key_id, now + ttl, checked=now)
        return key_id

    def _stale_verdict(
        self, digest: str, cached: _Verdict | None, now: float, exc: SQLAlchemyError
    ) -> str | None:
        """The database cannot be asked: the last verdict stands, for a bounded time."""
        if not self._database_down:
            self._database_down = True
            log.warning(
                "cannot check stillroom keys, the database is unavailable: %s; "
                "keys checked in the last %.0f s keep their verdict",
                str(exc).splitlines()[0][:200],
                self._stale_seconds,
            )
        if cached is None or now - cached.checked > self._stale_seconds:
            raise ServiceUnavailable(
                "stillroom cannot check this key now: its database is unavailable. "
                "Try again shortly.",
                code="database_unavailable",
            ) from None
        # Asked again soon, not on every request: a database that hangs must not slow each one.
        self._cache[digest] = _Verdict(cached.key_id, now + _RETRY_SECONDS, checked=cached.checked)
        return cached.key_id

    def _lookup(self, secret: str) -> str | None:
        with session_scope(self._engine) as session:
            key = find_active_key(secret, session=session)
            return key.id if key is not None else None


def check_admin(authorization: str | None, admin_key: str | None) -> None:
    if admin_key is None:
        raise PermissionDenied(
            "The admin API is disabled: set STILLROOM_ADMIN_KEY to enable it.",
            code="admin_disabled",
        )
    secret = _bearer(authorization)
    if secret is None or not hmac.compare_digest(secret.encode(), admin_key.encode()):
        raise AuthenticationFailed("The admin API needs the admin key.", code="invalid_admin_key")


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value
