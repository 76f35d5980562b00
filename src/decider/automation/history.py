"""The policy history: one row each time the policy in force changes, written once however many
processes notice the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Connection, Engine, func, insert, literal, select, text, update

from decider.automation.tables import PolicyChange
from decider.db import UTCDateTime, now
from decider.policy import Policy

CHANGE = PolicyChange.__table__  # type: ignore[attr-defined]
# Any fixed number: PostgreSQL advisory lock that serialises "is this version new? then insert".
_LOCK_KEY = 0x5DEC1DE4


def latest(*, conn: Connection) -> dict[str, Any] | None:
    """The newest stored policy change, or None on an empty history."""
    row = conn.execute(select(CHANGE).order_by(CHANGE.c.id.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def history(*, conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Stored changes, newest first."""
    rows = conn.execute(select(CHANGE).order_by(CHANGE.c.id.desc()).limit(limit)).mappings()
    return [dict(r) for r in rows]


def record(*, engine: Engine, policy: Policy, source: str, evidence: dict[str, Any] | None = None) -> int | None:
    """Store `policy` if it differs from the newest stored one; return the new row's id, or None."""
    with engine.begin() as conn:
        return record_in(conn, policy=policy, source=source, evidence=evidence)


def record_in(conn: Connection, *, policy: Policy, source: str, evidence: dict[str, Any] | None = None) -> int | None:
    """`record` in the caller's transaction (autopilot stores its moves and their policy together).

    The check and the insert are one statement; on PostgreSQL an advisory lock also orders two workers
    that noticed the same edit, so the second sees the first's row and inserts nothing.
    """
    newest = select(CHANGE.c.version).order_by(CHANGE.c.id.desc()).limit(1).scalar_subquery()
    values = select(
        literal(policy.version), literal(policy.as_dict(), JSON), literal(now(), UTCDateTime()), literal(source),
        literal(evidence, JSON),
    ).where(func.coalesce(newest, "") != policy.version)
    stmt = insert(CHANGE).from_select(["version", "content", "started_at", "source", "evidence"], values)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    return conn.execute(stmt.returning(CHANGE.c.id)).scalar()


def attach_replay(*, engine: Engine, change_id: int, replay: dict[str, Any]) -> None:
    """Store the what-if figures computed for a change after it took effect."""
    with engine.begin() as conn:
        conn.execute(update(CHANGE).where(CHANGE.c.id == change_id).values(replay=replay))


def stored_policy(row: dict[str, Any] | None) -> Policy | None:
    return Policy.from_dict(row["content"]) if row else None
