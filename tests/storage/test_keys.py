"""Stillroom keys are stored as hashes and found by their secret."""

from __future__ import annotations

from sqlalchemy import Engine, text

from storage import (
    KEY_PREFIX,
    create_api_key,
    find_active_key,
    list_api_keys,
    revoke_api_key,
    session_scope,
)


def test_created_key_is_found_by_secret_and_secret_is_not_stored(engine: Engine) -> None:
    with session_scope(engine) as session:
        key, secret = create_api_key("ci", session=session)
    assert secret.startswith(KEY_PREFIX) and len(secret) > 40
    with session_scope(engine) as session:
        found = find_active_key(secret, session=session)
        assert found is not None and found.id == key.id
        assert find_active_key(secret + "x", session=session) is None
    with engine.connect() as connection:
        stored = " ".join(str(v) for v in connection.execute(text("SELECT * FROM api_keys")).one())
    assert secret not in stored
    assert secret[10:] not in stored


def test_revoked_key_is_no_longer_found(engine: Engine) -> None:
    with session_scope(engine) as session:
        key, secret = create_api_key("temp", session=session)
    with session_scope(engine) as session:
        revoked = revoke_api_key(key.id, session=session)
        assert revoked is not None and revoked.revoked_at is not None
        assert revoke_api_key("key_missing", session=session) is None
    with session_scope(engine) as session:
        assert find_active_key(secret, session=session) is None
        assert [k.name for k in list_api_keys(session=session)] == ["temp"]
