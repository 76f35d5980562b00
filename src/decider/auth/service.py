"""API keys for client systems, review tokens and logins for people. All kept as hashes, never in the clear.

Two kinds of bearer credential, each doing only what its holder needs:
- a client key (`decider keys create NAME`) submits cases, reads its own cases and reports their outcomes;
- a review token (`decider users token NAME`) belongs to one reviewer or admin and acts as that person on the
  review API; an admin's token also reads the monitoring, models and policy APIs. The person's role and whether
  they are still enabled are read from the database on every request. Submitters have logins but no token.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, delete, func, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from decider.auth.tables import AccountChange, ApiKey, AppSetting, User, UserSession
from decider.db import insert_unless_there, now
from decider.errors import Conflict, Forbidden, InvalidInput, Unauthorized

ROLES = ("reviewer", "admin", "submitter")
# Who may do what in the browser: reviewers the queue and case pages (and the review API, with a token); admins
# that and every admin page; submitters only the form at /submit and their own cases there. Reviewers do not
# submit: the person who enters a case must not be the only one who decides it (admins, trusted with both, may).
REVIEW_ROLES = frozenset({"reviewer", "admin"})
SUBMIT_ROLES = frozenset({"submitter", "admin"})
# What each credential may do, as shown by `decider keys list` and in /docs.
SCOPE_RIGHTS = {
    "client": "submit cases; read and list its own cases; report their outcomes",
    "review": "act as its user on the review API (claim, release, resolve, read); admins also read "
              "/api/v1/monitoring, /api/v1/models and /api/v1/policy",
}
PREFIXES = {"client": "dk_", "review": "dr_"}
# Names people and systems are known by: shown in histories, so no spaces, markup or control characters.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
# Actors decider writes itself (a case `decided_by` "model"; a switch by "config" or "cli:<user>").
RESERVED_NAMES = {"model", "config"}
# argon2id at OWASP's recommended strength with one lane (m=46 MiB, t=2, p=1): a check uses one core, never
# both, so the gate in auth/throttle.py bounds what a login flood can take from API traffic. Hashes made with
# other parameters still verify, and are upgraded at the next good login.
_hasher = PasswordHasher(time_cost=2, memory_cost=46 * 1024, parallelism=1)
# Verified when the name is unknown, so an unknown name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# A valid client key is remembered for a few seconds so the hot path does not query for it every request.
_KEY_CACHE_SECONDS = 5.0
_key_cache: dict[str, tuple[str, float]] = {}
T_KEY = ApiKey.__table__  # type: ignore[attr-defined]
T_USER = User.__table__  # type: ignore[attr-defined]


def may_review(role: str) -> bool:
    return role in REVIEW_ROLES


def may_submit(role: str) -> bool:
    return role in SUBMIT_ROLES


def landing(role: str, target: str) -> str:
    """Where a login goes: the page asked for, except that a submitter, who has no queue, lands on the form
    unless they asked for one of its pages."""
    if may_review(role) or target == "/submit" or target.startswith("/submit/"):
        return target
    return "/submit"


@dataclass(frozen=True)
class Person:
    """A person acting now, as the database says at this moment."""

    id: int
    name: str
    role: str


def machine_actor(user: str | None = None) -> str:
    """Who acts from a command on the server's machine: `cli:<user>` (the login, or `--actor`), never a
    page login's name (those cannot start with `cli:`), so the history tells the two apart."""
    return "cli:" + (user or os.environ.get("USER") or getpass.getuser())


def record(session: Session, *, actor: str | None, action: str, target: str, detail: str | None = None) -> None:
    """One line of the account history; `actor` None is a command on this machine (`machine_actor`)."""
    session.add(AccountChange(actor=actor or machine_actor(), action=action, target=target, detail=detail))


def account_history(*, session: Session, limit: int = 50) -> list[AccountChange]:
    """The most recent changes to logins, keys and tokens first."""
    return list(session.exec(select(AccountChange).order_by(AccountChange.id.desc()).limit(limit)))  # type: ignore[union-attr]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_name(name: str, what: str) -> None:
    if not NAME.match(name) or name.lower() in RESERVED_NAMES or name.startswith("cli:"):
        raise InvalidInput(f"{what} {name!r}: use 1-100 letters, digits and . _ @ - (starting with a letter "
                           f"or digit), not one of {sorted(RESERVED_NAMES)}", field="name")


def _new_key(session: Session, *, name: str, scope: str, user_id: int | None = None) -> str:
    key = PREFIXES[scope] + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, scope=scope, user_id=user_id, prefix=key[:10], key_hash=hash_key(key)))
    session.flush()
    return key


def _active(session: Session, *, name: str, scope: str) -> ApiKey | None:
    return session.exec(select(ApiKey).where(ApiKey.name == name, ApiKey.scope == scope,
                                             ApiKey.revoked_at.is_(None))).first()  # type: ignore[union-attr]


def create_api_key(*, session: Session, name: str, actor: str | None = None) -> str:
    """Store a new client key's hash and return the key itself: the only time it is ever seen."""
    check_name(name, "client")
    if _active(session, name=name, scope="client"):
        raise Conflict(f"client {name!r} already has a live key (revoke it first, or rotate it)", field="name")
    record(session, actor=actor, action="key created", target=name)
    return _new_key(session, name=name, scope="client")


def revoke_api_key(*, session: Session, name: str, scope: str = "client", actor: str | None = None) -> None:
    row = _active(session, name=name, scope=scope)
    if row is None:
        kind = "client key" if scope == "client" else "review token"
        raise InvalidInput(f"no live {kind} named {name!r}", field="name")
    row.revoked_at = now()
    session.add(row)
    record(session, actor=actor, action="key revoked" if scope == "client" else "token revoked", target=name)
    _key_cache.clear()


def rotate_api_key(*, session: Session, name: str, actor: str | None = None) -> str:
    """Revoke the client's key and give it a new one under the same name, in one transaction."""
    row = _active(session, name=name, scope="client")
    if row is None:
        raise InvalidInput(f"no live client key named {name!r}", field="name")
    row.revoked_at = now()
    session.add(row)
    _key_cache.clear()
    session.flush()
    record(session, actor=actor, action="key rotated", target=name)
    return _new_key(session, name=name, scope="client")


def create_review_token(*, session: Session, user_name: str, actor: str | None = None) -> str:
    """A personal token for the review API; replaces the person's previous token."""
    user = _user(session, user_name)
    if user.disabled_at is not None:
        raise Conflict(f"user {user_name!r} is disabled")
    if not may_review(user.role):
        raise Conflict(f"user {user_name!r} is a {user.role}: review tokens are for reviewers and admins",
                       field="name")
    if _active(session, name=user.name, scope="review"):
        revoke_api_key(session=session, name=user.name, scope="review", actor=actor)
        session.flush()
    record(session, actor=actor, action="token created", target=user.name)
    return _new_key(session, name=user.name, scope="review", user_id=user.id)


def list_keys(*, session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(ApiKey.scope, ApiKey.name, ApiKey.id)))  # type: ignore[arg-type]


def client_for_key(*, engine: Engine, key: str) -> str:
    """The name of the client that holds the client key `key`; 401 for an unknown key, 403 for another kind."""
    digest = hash_key(key)
    cached = _key_cache.get(digest)
    if cached and cached[1] > time.monotonic():
        return cached[0]
    with engine.connect() as conn:
        row = conn.execute(sa_select(T_KEY.c.name, T_KEY.c.scope).where(
            T_KEY.c.key_hash == digest, T_KEY.c.revoked_at.is_(None))).first()
    if row is None:
        raise Unauthorized("invalid or revoked API key")
    if row.scope != "client":
        raise Forbidden("this endpoint takes a client key (decider keys create NAME); a review token "
                        "acts only on /api/v1/review and the admin read APIs")
    _key_cache[digest] = (row.name, time.monotonic() + _KEY_CACHE_SECONDS)
    return row.name


def person_for_token(*, conn: Connection, key: str) -> Person:
    """The enabled person whose review token `key` is; read every time, so disabling a user acts at once."""
    row = conn.execute(
        sa_select(T_KEY.c.scope, T_USER.c.id, T_USER.c.name, T_USER.c.role, T_USER.c.disabled_at)
        .select_from(T_KEY.outerjoin(T_USER, T_USER.c.id == T_KEY.c.user_id))
        .where(T_KEY.c.key_hash == hash_key(key), T_KEY.c.revoked_at.is_(None))
    ).first()
    if row is None:
        raise Unauthorized("invalid or revoked API key")
    if row.scope != "review" or row.id is None:
        raise Forbidden("this endpoint needs a person's review token (decider users token NAME; an admin's "
                        "for monitoring, models and policy); a client key only submits and reads its own cases")
    if row.disabled_at is not None:
        raise Unauthorized("this token's user is disabled")
    if not may_review(row.role):  # none is made for a submitter (create_review_token); refused all the same
        raise Forbidden("this token's user is a submitter: the review API is for reviewers and admins")
    return Person(id=row.id, name=row.name, role=row.role)


def _user(session: Session, name: str) -> User:
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        raise InvalidInput(f"no user named {name!r}", field="name")
    return user


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise InvalidInput("password must be at least 8 characters", field="password")


def add_user(*, session: Session, name: str, password: str, role: str, actor: str | None = None) -> User:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)} (got {role!r})", field="role")
    check_name(name, "user")
    _check_password(password)
    # Unique regardless of case, so "Admin" cannot pass for "admin" in a case's history.
    if session.exec(select(User).where(func.lower(User.name) == name.lower())).first():
        raise Conflict(f"a user named {name!r} already exists")
    user = User(name=name, password_hash=_hasher.hash(password), role=role)
    session.add(user)
    record(session, actor=actor, action="user added", target=name, detail=role)
    session.flush()
    return user


def end_sessions(session: Session, user_id: int) -> None:
    session.exec(delete(UserSession).where(UserSession.user_id == user_id))  # type: ignore[call-overload,arg-type]


def set_password(*, session: Session, name: str, password: str, actor: str | None = None) -> User:
    """A new password; every browser session of the person ends, so a stolen cookie stops working too, and
    the name's failed-login counters are cleared, so an owner locked out can log in at once. The person's
    review token is a credential of its own: `revoke_review_token` ends it."""
    from decider.auth.throttle import forget_name

    _check_password(password)
    user = _user(session, name)
    user.password_hash = _hasher.hash(password)
    session.add(user)
    end_sessions(session, user.id)  # type: ignore[arg-type]
    forget_name(session.connection(), user.name)
    record(session, actor=actor, action="password set", target=user.name)
    return user


def revoke_review_token(*, session: Session, user_name: str, actor: str | None = None) -> None:
    revoke_api_key(session=session, name=_user(session, user_name).name, scope="review", actor=actor)


def set_disabled(*, session: Session, name: str, disabled: bool, actor: str | None = None) -> User:
    """Disable (no login, sessions ended, tokens refused) or enable a person again."""
    user = _user(session, name)
    user.disabled_at = now() if disabled else None
    session.add(user)
    if disabled:
        end_sessions(session, user.id)  # type: ignore[arg-type]
    record(session, actor=actor, action="disabled" if disabled else "enabled", target=user.name)
    return user


def list_users(*, session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(User.name)))  # type: ignore[arg-type]


def verify_login(*, conn: Connection, name: str, password: str) -> Person | None:
    """The enabled person with this name and password, or None. Unknown names, wrong passwords and
    disabled users each cost one argon2 verification, so the answer and its timing tell them apart for
    nobody. Call it only under the login gate (auth/throttle.py): a check holds 46 MiB and a core."""
    row = conn.execute(sa_select(T_USER).where(T_USER.c.name == name)).mappings().first()
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled_at"] is not None:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        conn.execute(update(T_USER).where(T_USER.c.id == row["id"])
                     .values(password_hash=_hasher.hash(password)))
    return Person(id=row["id"], name=row["name"], role=row["role"])


def shared_secret(*, session: Session, name: str) -> str:
    """A random secret generated once and shared by every process through the database.

    Offered first and read back after, so workers starting together on a new database store one secret and
    all read it: a read first had two of them insert, and one failed (a UNIQUE error, or on SQLite a write
    from a stale snapshot)."""
    table = AppSetting.__table__  # type: ignore[attr-defined]
    insert_unless_there(session.connection(), table, {"key": name, "value": secrets.token_urlsafe(48)}, ["key"])
    return session.exec(select(AppSetting.value).where(AppSetting.key == name)).one()


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


def describe_time(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at else "-"
