"""Claim, release and resolve queued cases. Every write is a conditional UPDATE, so two reviewers can
never both hold or both decide one case, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from decider.cases.service import CASE, EVENT, get_case
from decider.db import now
from decider.errors import Conflict, InvalidInput

Sort = Literal["age", "confidence"]


def _claimable(at):  # type: ignore[no-untyped-def]
    return and_(CASE.c.review_status == "pending",
                or_(CASE.c.claimed_by.is_(None), CASE.c.claim_expires_at < at))


def _event(conn: Connection, case_id: int, kind: str, actor: str, detail: dict | None = None) -> None:
    conn.execute(insert(EVENT).values(case_id=case_id, kind=kind, actor=actor, at=now(), detail=detail))


def claim_next(*, conn: Connection, reviewer: str, lease_seconds: int, sort: Sort = "age",
               skip: int | None = None) -> dict[str, Any] | None:
    """Claim the next case in queue order for `reviewer`; None when nothing is waiting.

    A reviewer who already holds a live claim gets that case back rather than a second one; `skip` is a
    case just released, so Skip does not hand the same case straight back.
    """
    at = now()
    held = conn.execute(select(CASE.c.id).where(
        CASE.c.review_status == "pending", CASE.c.claimed_by == reviewer, CASE.c.claim_expires_at >= at
    ).order_by(CASE.c.id).limit(1)).scalar()
    if held is not None:
        return get_case(conn=conn, case_id=held)
    order = [CASE.c.id] if sort == "age" else [CASE.c.confidence, CASE.c.id]
    for _ in range(20):  # another reviewer may take the case between the select and the update
        query = select(CASE.c.id).where(_claimable(at)).order_by(*order).limit(1)
        if skip is not None:
            query = query.where(CASE.c.id != skip)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        case_id = conn.execute(query).scalar()
        if case_id is None:
            return None
        if _take(conn, case_id, reviewer, lease_seconds, at):
            return get_case(conn=conn, case_id=case_id)
    return None


def claim(*, conn: Connection, case_id: int, reviewer: str, lease_seconds: int) -> dict[str, Any]:
    """Claim one named case, or say why not (409)."""
    at = now()
    if not _take(conn, case_id, reviewer, lease_seconds, at):
        case = get_case(conn=conn, case_id=case_id)
        raise Conflict(_why_not_free(case, reviewer, at))
    return get_case(conn=conn, case_id=case_id)


def _take(conn: Connection, case_id: int, reviewer: str, lease_seconds: int, at) -> bool:  # type: ignore[no-untyped-def]
    until = at + timedelta(seconds=lease_seconds)
    result = conn.execute(update(CASE).where(
        CASE.c.id == case_id,
        or_(_claimable(at), and_(CASE.c.review_status == "pending", CASE.c.claimed_by == reviewer)),
    ).values(claimed_by=reviewer, claim_expires_at=until))
    if result.rowcount != 1:
        return False
    _event(conn, case_id, "claimed", reviewer, {"until": until.isoformat()})
    return True


def release(*, conn: Connection, case_id: int, reviewer: str) -> None:
    """Give a claimed case back to the queue (Skip)."""
    result = conn.execute(update(CASE).where(
        CASE.c.id == case_id, CASE.c.review_status == "pending", CASE.c.claimed_by == reviewer
    ).values(claimed_by=None, claim_expires_at=None))
    if result.rowcount != 1:
        case = get_case(conn=conn, case_id=case_id)
        raise Conflict(_why_not_yours(case, reviewer, now()))
    _event(conn, case_id, "released", reviewer)


def resolve(*, conn: Connection, case_id: int, reviewer: str, label: str, labels: list[str],
            note: str | None = None) -> dict[str, Any]:
    """Record the reviewer's label. For a queued case it is the decision; for an audit, a check on the model."""
    if label not in labels:
        raise InvalidInput(f"label: {label!r} is not one of {labels}", field="label")
    at = now()
    case = get_case(conn=conn, case_id=case_id)
    values: dict[str, Any] = {"review_status": "done", "review_label": label, "reviewed_by": reviewer,
                              "reviewed_at": at, "review_note": note or None,
                              "claimed_by": None, "claim_expires_at": None}
    if case["status"] == "pending":
        values |= {"status": "decided", "decision": label, "decided_by": reviewer, "decided_at": at}
    result = conn.execute(update(CASE).where(
        CASE.c.id == case_id, CASE.c.review_status == "pending",
        CASE.c.claimed_by == reviewer, CASE.c.claim_expires_at >= at,
    ).values(**values))
    if result.rowcount != 1:
        raise Conflict(_why_not_yours(case, reviewer, at))
    kind = "decided" if case["status"] == "pending" else "audited"
    _event(conn, case_id, kind, reviewer, {"label": label, "note": note or None})
    return get_case(conn=conn, case_id=case_id)


def _why_not_free(case: dict[str, Any], reviewer: str, at) -> str:  # type: ignore[no-untyped-def]
    if case["review_status"] != "pending":
        return f"case {case['id']} is already resolved"
    return f"case {case['id']} is claimed by {case['claimed_by']} until {case['claim_expires_at']:%H:%M:%S}"


def _why_not_yours(case: dict[str, Any], reviewer: str, at) -> str:  # type: ignore[no-untyped-def]
    if case["review_status"] != "pending":
        return f"case {case['id']} is already resolved"
    if case["claimed_by"] and case["claimed_by"] != reviewer and case["claim_expires_at"] >= at:
        return _why_not_free(case, reviewer, at)
    return f"case {case['id']} is not claimed by you (claim it first; leases expire)"


@dataclass
class QueueStats:
    pending: int
    oldest_created_at: Any
    claimed: int


def queue_stats(*, conn: Connection) -> QueueStats:
    at = now()
    row = conn.execute(select(func.count(), func.min(CASE.c.created_at)).where(
        CASE.c.review_status == "pending")).one()
    claimed = conn.execute(select(func.count()).where(
        CASE.c.review_status == "pending", CASE.c.claim_expires_at >= at)).scalar_one()
    return QueueStats(pending=row[0], oldest_created_at=row[1], claimed=claimed)


def queue_page(*, conn: Connection, sort: Sort, after: tuple[float, int] | None, limit: int,
               suggested: str | None = None, model_version: str | None = None) -> list[dict[str, Any]]:
    """One page of the pending queue, keyset-paginated on (confidence, id) or id, using the queue indexes."""
    query = select(CASE).where(CASE.c.review_status == "pending")
    if suggested:
        query = query.where(CASE.c.prediction == suggested)
    if model_version:
        query = query.where(CASE.c.model_version == model_version)
    if sort == "confidence":
        conf = func.coalesce(CASE.c.confidence, -1.0)
        if after is not None:
            query = query.where(or_(conf > after[0], and_(conf == after[0], CASE.c.id > after[1])))
        query = query.order_by(conf, CASE.c.id)
    else:
        if after is not None:
            query = query.where(CASE.c.id > after[1])
        query = query.order_by(CASE.c.id)
    return [dict(r) for r in conn.execute(query.limit(limit)).mappings()]


def history(*, conn: Connection, case_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(EVENT).where(EVENT.c.case_id == case_id).order_by(EVENT.c.id)).mappings()
    return [dict(r) for r in rows]


