"""API keys for client systems and logins for people. Both kept as hashes, never in the clear."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from decider.auth.tables import ApiKey, AppSetting, User
from decider.db import now
from decider.errors import Conflict, InvalidInput, Unauthorized

ROLES = ("reviewer", "admin")
KEY_PREFIX = "dk_"
_hasher = PasswordHasher()
# A valid key is remembered for a few seconds so the hot path does not query for it every request.
_KEY_CACHE_SECONDS = 5.0
_key_cache: dict[str, tuple[str, float]] = {}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(*, session: Session, name: str) -> str:
    """Store a new key's hash and return the key itself: the only time it is ever seen."""
    if session.exec(select(ApiKey).where(ApiKey.name == name)).first():
        raise Conflict(f"an API key named {name!r} already exists")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, prefix=key[:10], key_hash=hash_key(key)))
    session.flush()
    return key


def revoke_api_key(*, session: Session, name: str) -> None:
    row = session.exec(select(ApiKey).where(ApiKey.name == name)).first()
    if row is None:
        raise InvalidInput(f"no API key named {name!r}")
    row.revoked_at = now()
    session.add(row)
    _key_cache.clear()


def client_for_key(*, engine: Engine, key: str) -> str:
    """The name of the client that holds `key`, or Unauthorized."""
    digest = hash_key(key)
    cached = _key_cache.get(digest)
    if cached and cached[1] > time.monotonic():
        return cached[0]
    with engine.connect() as conn:
        name = conn.execute(
            sa_select(ApiKey.__table__.c.name).where(  # type: ignore[attr-defined]
                ApiKey.__table__.c.key_hash == digest, ApiKey.__table__.c.revoked_at.is_(None)  # type: ignore[attr-defined]
            )
        ).scalar()
    if name is None:
        raise Unauthorized("invalid or revoked API key")
    _key_cache[digest] = (name, time.monotonic() + _KEY_CACHE_SECONDS)
    return name


def add_user(*, session: Session, name: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)} (got {role!r})", field="role")
    if len(password) < 8:
        raise InvalidInput("password must be at least 8 characters", field="password")
    if session.exec(select(User).where(User.name == name)).first():
        raise Conflict(f"a user named {name!r} already exists")
    user = User(name=name, password_hash=_hasher.hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def authenticate(
    *, session: Session, name: str, password: str, max_failed: int, lockout_seconds: int
) -> User:
    """The user, or Unauthorized; after `max_failed` bad passwords the account waits `lockout_seconds`."""
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        _hasher.hash(password)  # spend the same time as a real check, so names cannot be probed by timing
        raise Unauthorized("wrong name or password")
    if user.locked_until and user.locked_until > now():
        raise Unauthorized("too many failed logins: try again in a minute")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        if user.failed_logins >= max_failed:
            user.locked_until = now() + timedelta(seconds=lockout_seconds)
            user.failed_logins = 0
        session.add(user)
        session.commit()  # the failure must count even though the request fails
        raise Unauthorized("wrong name or password") from None
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    return user


def shared_secret(*, session: Session, name: str) -> str:
    """A random secret generated once and shared by every process through the database."""
    row = session.get(AppSetting, name)
    if row is None:
        row = AppSetting(key=name, value=secrets.token_urlsafe(48))
        session.add(row)
        session.flush()
    return row.value


def bootstrap(*, session: Session) -> tuple[str, str] | None:
    """On an empty database, create a first API key and admin login; return them to print once."""
    has_keys = session.exec(select(ApiKey)).first()
    has_users = session.exec(select(User)).first()
    if has_keys or has_users:
        return None
    key = create_api_key(session=session, name="default")
    password = secrets.token_urlsafe(12)
    add_user(session=session, name="admin", password=password, role="admin")
    return key, password
