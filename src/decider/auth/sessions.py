"""Browser sessions kept on the server. The signed cookie carries only a random session id; the row behind
it says who is logged in. Logout, a password change and disabling the person delete the row, so a copied
cookie stops working at once, and the role is read from the user row on every request."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import Connection, delete, insert, select

from decider.auth.service import T_USER, Person, hash_key
from decider.auth.tables import UserSession
from decider.db import now

T_SESSION = UserSession.__table__  # type: ignore[attr-defined]
SESSION_HOURS = 12


def start(*, conn: Connection, person: Person) -> str:
    """A new session for `person`; returns the id to put in the cookie. Expired rows are cleared here."""
    at = now()
    conn.execute(delete(T_SESSION).where(T_SESSION.c.expires_at < at))
    sid = secrets.token_urlsafe(32)
    conn.execute(insert(T_SESSION).values(id_hash=hash_key(sid), user_id=person.id, created_at=at,
                                          expires_at=at + timedelta(hours=SESSION_HOURS)))
    return sid


def person(*, conn: Connection, sid: str) -> Person | None:
    """Who holds session `sid` now, or None for an ended, expired or unknown session or a disabled user."""
    row = conn.execute(
        select(T_USER.c.id, T_USER.c.name, T_USER.c.role)
        .select_from(T_SESSION.join(T_USER, T_USER.c.id == T_SESSION.c.user_id))
        .where(T_SESSION.c.id_hash == hash_key(sid), T_SESSION.c.expires_at > now(),
               T_USER.c.disabled_at.is_(None))
    ).first()
    return Person(id=row.id, name=row.name, role=row.role) if row else None


def end(*, conn: Connection, sid: str) -> None:
    conn.execute(delete(T_SESSION).where(T_SESSION.c.id_hash == hash_key(sid)))
