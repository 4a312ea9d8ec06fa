"""Which key goes upstream, and who the caller is, for every kind of credential."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from proxy._errors import AuthenticationFailed, PermissionDenied, ServiceUnavailable
from proxy.gateway._auth import _PASSED_THROUGH_KEPT, Authenticator, check_admin
from storage import create_api_key, revoke_api_key, session_scope
from tests.proxy.gateway.test_sink import Outage


def authenticator(engine: Engine, *, allow_client_keys: bool = True) -> Authenticator:
    return Authenticator(
        engine, upstream_key="sk-server-upstream", allow_client_keys=allow_client_keys
    )


async def test_client_key_passes_through_with_a_fingerprint_not_the_key(engine: Engine) -> None:
    caller = await authenticator(engine).caller("Bearer sk-client-own-key-123")
    assert caller.upstream_key == "sk-client-own-key-123"
    assert caller.key_id.startswith("pt_") and "sk-client" not in caller.key_id
    again = await authenticator(engine).caller("Bearer sk-client-own-key-123")
    assert again.key_id == caller.key_id


async def test_remembered_pass_through_callers_stay_per_key_and_bounded(engine: Engine) -> None:
    auth = authenticator(engine)
    first = await auth.caller("Bearer sk-client-a")
    other = await auth.caller("Bearer sk-client-b")
    assert other.key_id != first.key_id and other.upstream_key == "sk-client-b"
    for n in range(_PASSED_THROUGH_KEPT + 10):
        await auth.caller(f"Bearer sk-client-{n}")
    assert len(auth._passed) <= _PASSED_THROUGH_KEPT
    # Forgotten or not, each key still gets its own caller, the same as before.
    assert await auth.caller("Bearer sk-client-a") == first
    assert await authenticator(engine).caller("Bearer sk-client-b") == other


async def test_stillroom_key_is_swapped_for_the_server_key(engine: Engine) -> None:
    with session_scope(engine) as session:
        key, secret = create_api_key("team-a", session=session)
    caller = await authenticator(engine).caller(f"Bearer {secret}")
    assert caller.key_id == key.id
    assert caller.upstream_key == "sk-server-upstream"


async def test_unknown_and_revoked_stillroom_keys_are_refused(engine: Engine) -> None:
    auth = authenticator(engine)
    with pytest.raises(AuthenticationFailed, match="Incorrect stillroom key"):
        await auth.caller("Bearer sr-not-a-real-key")
    with session_scope(engine) as session:
        key, secret = create_api_key("short-lived", session=session)
        revoke_api_key(key.id, session=session)
    with pytest.raises(AuthenticationFailed):
        await authenticator(engine).caller(f"Bearer {secret}")


async def test_missing_or_malformed_authorization_is_refused(engine: Engine) -> None:
    auth = authenticator(engine)
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(AuthenticationFailed) as raised:
            await auth.caller(header)
        assert raised.value.code == "missing_api_key"


async def test_client_keys_can_be_forbidden(engine: Engine) -> None:
    with pytest.raises(AuthenticationFailed, match="only stillroom keys"):
        await authenticator(engine, allow_client_keys=False).caller("Bearer sk-client")


def test_admin_key_is_required_and_compared_exactly() -> None:
    with pytest.raises(PermissionDenied):
        check_admin("Bearer anything", None)
    with pytest.raises(AuthenticationFailed):
        check_admin("Bearer wrong", "right-admin-key")
    with pytest.raises(AuthenticationFailed):
        check_admin(None, "right-admin-key")
    check_admin("Bearer right-admin-key", "right-admin-key")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_known_key_keeps_working_while_the_database_is_down_then_revocation_applies(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        key, secret = create_api_key("team-a", session=session)
    clock = Clock()
    auth = Authenticator(
        engine, upstream_key="sk-server", allow_client_keys=True, clock=clock, stale_seconds=600
    )
    assert (await auth.caller(f"Bearer {secret}")).key_id == key.id
    outage = Outage(engine)
    outage.down = True
    clock.now += 31  # past the 30 s cache
    assert (await auth.caller(f"Bearer {secret}")).key_id == key.id
    clock.now += 500  # still within the stale bound
    assert (await auth.caller(f"Bearer {secret}")).key_id == key.id
    with pytest.raises(ServiceUnavailable) as unknown:
        await auth.caller("Bearer sr-never-seen-before")
    assert unknown.value.code == "database_unavailable"

    outage.down = False
    with session_scope(engine) as session:
        revoke_api_key(key.id, session=session)
    clock.now += 3  # the stale verdict is asked about again within seconds
    with pytest.raises(AuthenticationFailed):
        await auth.caller(f"Bearer {secret}")


async def test_a_stale_verdict_is_bounded(engine: Engine) -> None:
    with session_scope(engine) as session:
        _, secret = create_api_key("team-a", session=session)
    clock = Clock()
    auth = Authenticator(
        engine, upstream_key="sk-server", allow_client_keys=True, clock=clock, stale_seconds=60
    )
    await auth.caller(f"Bearer {secret}")
    Outage(engine).down = True
    clock.now += 61
    with pytest.raises(ServiceUnavailable):
        await auth.caller(f"Bearer {secret}")
