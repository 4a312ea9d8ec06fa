"""Stillroom API keys: created once, stored as a hash, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, col, select

from storage._models import ApiKey, utcnow

KEY_PREFIX = "sr-"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(name: str, *, session: Session) -> tuple[ApiKey, str]:
    """Create a key; the returned secret is never stored and cannot be shown again."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id="key_" + secrets.token_hex(8),
        name=name,
        key_hash=hash_secret(secret),
        prefix=secret[:10],
    )
    session.add(key)
    session.flush()
    return key, secret


def find_active_key(secret: str, *, session: Session) -> ApiKey | None:
    key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_secret(secret))).first()
    if key is None or key.revoked_at is not None:
        return None
    return key


def list_api_keys(*, session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all())


def revoke_api_key(key_id: str, *, session: Session) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    if key is None:
        return None
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
        session.flush()
    return key
