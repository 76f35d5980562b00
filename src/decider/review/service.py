"""Claim, release and resolve queued cases. Every write is a conditional UPDATE, so two reviewers can
never both hold or both decide one case, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Select, and_, false, func, insert, not_, or_, select, true, tuple_, update

from decider.cases.service import CASE, EVENT, MODEL_FIELDS, first_events, get_case
from decider.db import now
from decider.errors import Conflict, Forbidden, InvalidInput
from decider.webhooks.outbox import cancel_unsent, enqueue

Sort = Literal["age", "confidence"]

# Cases whose model output a reviewer may see. Only these are sorted or filtered by what the model said:
# ordering shadow cases by confidence would leak the hidden output through the order itself.
SHOWN = and_(CASE.c.show_suggestion == true(), CASE.c.audit == false())
RANKED = and_(SHOWN, CASE.c.confidence.is_not(None))
PENDING = CASE.c.review_status == "pending"


def model_hidden(case: Mapping[str, Any]) -> bool:
    """Reviewers see the model's output only where the level allows it, and never on a blind audit."""
    return not case["show_suggestion"] or bool(case["audit"])


def reviewer_view(case: Mapping[str, Any]) -> dict[str, Any]:
    """The case with the model's output removed where the reviewer must not see it (and, on a blind
    audit, the model's decision too)."""
    out = dict(case)
    if model_hidden(case):
        out |= dict.fromkeys(MODEL_FIELDS)
        if case["audit"] and case["review_status"] == "pending":
            out |= {"decision": None, "decided_by": None, "decided_at": None}
    return out


def event_view(event: Mapping[str, Any], hidden: bool) -> dict[str, Any]:
    """A history line as a reviewer sees it: what the model said stays out wherever the model is hidden."""
    if hidden and event["detail"] and (event["kind"] == "scored" or event["actor"] == "model"):
        return dict(event) | {"detail": None}
    return dict(event)


def _claimable(at: datetime):  # type: ignore[no-untyped-def]
    return and_(PENDING, or_(CASE.c.claimed_by.is_(None), CASE.c.claim_expires_at < at))


def _event(conn: Connection, case_id: int, kind: str, actor: str, detail: dict | None = None) -> None:
    conn.execute(insert(EVENT).values(case_id=case_id, kind=kind, actor=actor, at=now(), detail=detail))


def _in_queue_order(sort: Sort, where: list[Any]) -> Iterator[Select]:
    """Queries that together list the pending cases in queue order, each served by one index: overdue cases
    first (most overdue first), then by confidence or by deadline, then by age."""
    yield select(CASE.c.id).where(*where, CASE.c.overdue_at.is_not(None)).order_by(CASE.c.due_at, CASE.c.id)
    where = [*where, CASE.c.overdue_at.is_(None)]
    if sort == "confidence":
        yield select(CASE.c.id).where(*where, RANKED).order_by(CASE.c.confidence, CASE.c.id)
        yield select(CASE.c.id).where(*where, not_(RANKED)).order_by(CASE.c.id)
    else:
        yield select(CASE.c.id).where(*where, CASE.c.due_at.is_not(None)).order_by(CASE.c.due_at, CASE.c.id)
        yield select(CASE.c.id).where(*where, CASE.c.due_at.is_(None)).order_by(CASE.c.id)


def claim_next(*, conn: Connection, reviewer: str, lease_seconds: int, sort: Sort = "age") -> dict[str, Any] | None:
    """Claim the next case in queue order for `reviewer`; None when nothing is waiting.

    A reviewer who already holds a live claim gets that case back rather than a second one. Cases this
    reviewer skipped (released) come after every other waiting case, in queue order among themselves: a skip
    means later, not straight back. Others see them in their usual place.
    """
    at = now()
    # No ORDER BY or min() in SQL: either lets SQLite walk the whole queue in id order (ix_case_queue_age)
    # looking for this reviewer's claim; without them it reads the few live claims (ix_case_queue_claims).
    held = min(conn.execute(select(CASE.c.id).where(
        PENDING, CASE.c.claim_expires_at >= at, CASE.c.claimed_by == reviewer)).scalars(), default=None)
    if held is not None:
        return get_case(conn=conn, case_id=held)
    later = list(conn.execute(select(EVENT.c.case_id).join(CASE, CASE.c.id == EVENT.c.case_id).where(
        PENDING, EVENT.c.kind == "released", EVENT.c.actor == reviewer).distinct()).scalars())
    passes = [[_claimable(at), CASE.c.id.not_in(later)], [_claimable(at), CASE.c.id.in_(later)]] if later \
        else [[_claimable(at)]]
    for where in passes:
        for query in _in_queue_order(sort, where):
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for _ in range(20):  # another reviewer may take the case between the select and the update
                case_id = conn.execute(query.limit(1)).scalar()
                if case_id is None:
                    break
                if _take(conn, case_id, reviewer, lease_seconds, at):
                    return get_case(conn=conn, case_id=case_id)
    return None


def claim(*, conn: Connection, case_id: int, reviewer: str, lease_seconds: int) -> dict[str, Any]:
    """Claim one named case (renewing the lease if it is already yours), or say why not (409)."""
    at = now()
    if not _take(conn, case_id, reviewer, lease_seconds, at, renew=True):
        case = get_case(conn=conn, case_id=case_id)
        raise Conflict(_why_not_free(case))
    return get_case(conn=conn, case_id=case_id)


def _take(conn: Connection, case_id: int, reviewer: str, lease_seconds: int, at: datetime,
          renew: bool = False) -> bool:
    until = at + timedelta(seconds=lease_seconds)
    if renew:  # a reload of a case you hold extends the lease without a new line in its history
        mine = and_(PENDING, CASE.c.claimed_by == reviewer, CASE.c.claim_expires_at >= at)
        if conn.execute(update(CASE).where(CASE.c.id == case_id, mine)
                        .values(claim_expires_at=until)).rowcount == 1:
            return True
    result = conn.execute(update(CASE).where(
        CASE.c.id == case_id,
        or_(_claimable(at), and_(PENDING, CASE.c.claimed_by == reviewer)),
    ).values(claimed_by=reviewer, claim_expires_at=until))
    if result.rowcount != 1:
        return False
    _event(conn, case_id, "claimed", reviewer, {"until": until.isoformat()})
    return True


def release(*, conn: Connection, case_id: int, reviewer: str) -> None:
    """Give a claimed case back to the queue (Skip): it waits for others in its place, and for this reviewer
    behind every other waiting case (claim_next)."""
    result = conn.execute(update(CASE).where(
        CASE.c.id == case_id, PENDING, CASE.c.claimed_by == reviewer
    ).values(claimed_by=None, claim_expires_at=None))
    if result.rowcount != 1:
        case = get_case(conn=conn, case_id=case_id)
        raise Conflict(_why_not_yours(case, reviewer, now()))
    _event(conn, case_id, "released", reviewer)


def resolve(*, conn: Connection, case_id: int, reviewer: str, label: str, labels: list[str],
            note: str | None = None, undo_seconds: float = 0) -> dict[str, Any]:
    """Record the reviewer's label. For a queued case it is the decision; for an audit, a check on the model.
    `undo_seconds`: how long the reviewer may still undo it (the page); the client's webhook waits as long."""
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
        CASE.c.id == case_id, PENDING, CASE.c.claimed_by == reviewer, CASE.c.claim_expires_at >= at,
    ).values(**values))
    if result.rowcount != 1:
        raise Conflict(_why_not_yours(get_case(conn=conn, case_id=case_id), reviewer, at))
    kind = "decided" if case["status"] == "pending" else "audited"
    _event(conn, case_id, kind, reviewer, {"label": label, "note": note or None})
    resolved = get_case(conn=conn, case_id=case_id)
    if kind == "decided":  # the client hears of it in the same transaction (webhooks/outbox.py)
        enqueue(conn, "case.decided", [resolved], delay_seconds=undo_seconds)
    return resolved


def undo(*, conn: Connection, case_id: int, reviewer: str, within_seconds: float,
         lease_seconds: int) -> dict[str, Any]:
    """Take back `reviewer`'s decision (or audit label) on a case made in the last `within_seconds`: the case
    is theirs to decide again, the history keeps both steps, and the webhook not yet sent is withdrawn."""
    at = now()
    case = get_case(conn=conn, case_id=case_id)
    mine = case["review_status"] == "done" and case["reviewed_by"] == reviewer and case["reviewed_at"] is not None \
        and case["reviewed_at"] >= at - timedelta(seconds=within_seconds)
    if not mine:
        raise Conflict(f"case {case_id}: no decision of yours from the last {within_seconds:g} s to undo")
    values: dict[str, Any] = {"review_status": "pending", "review_label": None, "reviewed_by": None,
                              "reviewed_at": None, "review_note": None, "claimed_by": reviewer,
                              "claim_expires_at": at + timedelta(seconds=lease_seconds)}
    queued = case["decided_by"] == reviewer
    if queued:
        values |= {"status": "pending", "decision": None, "decided_by": None, "decided_at": None}
    done = conn.execute(update(CASE).where(CASE.c.id == case_id, CASE.c.reviewed_at == case["reviewed_at"],
                                           CASE.c.reviewed_by == reviewer).values(**values)).rowcount
    if not done:
        raise Conflict(f"case {case_id} changed meanwhile: nothing undone")
    _event(conn, case_id, "undone", reviewer, {"label": case["review_label"]})
    if queued:
        cancel_unsent(conn, case_id, "case.decided")
    return get_case(conn=conn, case_id=case_id)


def correct(*, conn: Connection, case_id: int, person: str, admin: bool, label: str, labels: list[str],
            note: str) -> dict[str, Any]:
    """Change a decided case's decision, the model's or a person's, with a note saying why. An admin may
    correct any decision, a reviewer their own. Every earlier decision stays in the history; the client gets
    `case.corrected`; where the case's label counts as evidence (a queued case, a blind audit) the corrected
    label replaces it, so the quality figures use it."""
    if label not in labels:
        raise InvalidInput(f"label: {label!r} is not one of {labels}", field="label")
    if not note.strip():
        raise InvalidInput("note: say why the decision is corrected", field="note")
    case = get_case(conn=conn, case_id=case_id)
    if case["status"] != "decided":
        raise Conflict(f"case {case_id} is not decided yet: decide it instead")
    if not admin and case["decided_by"] != person:
        raise Forbidden(f"case {case_id} was decided by {case['decided_by']}: only an admin may correct it")
    if case["decision"] == label:
        raise Conflict(f"case {case_id} is already decided {label!r}")
    at = now()
    values: dict[str, Any] = {"decision": label, "decided_by": person, "decided_at": at}
    if case["route"] == "queue" or case["audit"]:  # a person's label on a case that counts as evidence
        values |= {"review_status": "done", "review_label": label, "reviewed_by": person, "reviewed_at": at,
                   "claimed_by": None, "claim_expires_at": None}
    done = conn.execute(update(CASE).where(CASE.c.id == case_id, CASE.c.decision == case["decision"],
                                           CASE.c.status == "decided").values(**values)).rowcount
    if not done:
        raise Conflict(f"case {case_id} changed meanwhile: look again before correcting it")
    _event(conn, case_id, "corrected", person, {"from": case["decision"], "from_by": case["decided_by"],
                                                 "label": label, "note": note.strip()})
    corrected = get_case(conn=conn, case_id=case_id)
    enqueue(conn, "case.corrected", [corrected], extra={"previous_decision": case["decision"],
                                                         "previous_decided_by": case["decided_by"]})
    return corrected


def _why_not_free(case: dict[str, Any]) -> str:
    if case["review_status"] != "pending":
        return f"case {case['id']} is already resolved" if case["review_status"] else \
            f"case {case['id']} is not waiting for a review"
    return f"case {case['id']} is claimed by {case['claimed_by']} until {case['claim_expires_at']:%H:%M:%S} UTC"


def _why_not_yours(case: dict[str, Any], reviewer: str, at: datetime) -> str:
    if case["review_status"] != "pending":
        return _why_not_free(case)
    if case["claimed_by"] and case["claimed_by"] != reviewer and case["claim_expires_at"] >= at:
        return _why_not_free(case)
    return f"case {case['id']} is not claimed by you (claim it first; leases expire)"


@dataclass
class QueueStats:
    pending: int
    oldest_created_at: datetime | None
    claimed: int


def queue_stats(*, conn: Connection) -> QueueStats:
    """How many wait, since when, and how many are held now: each answered from an index."""
    pending = conn.execute(select(func.count()).select_from(CASE).where(PENDING)).scalar_one()
    # ids follow arrival, so the oldest pending case is the lowest id (ix_case_queue_age), not a scan.
    oldest = conn.execute(select(CASE.c.created_at).where(PENDING).order_by(CASE.c.id).limit(1)).scalar()
    claimed = conn.execute(select(func.count()).select_from(CASE).where(
        PENDING, CASE.c.claim_expires_at >= now())).scalar_one()
    return QueueStats(pending=pending, oldest_created_at=oldest, claimed=claimed)


_CURSOR = re.compile(r"^(?:(?P<part>[ah])(?P<id>\d{1,18})|v(?P<conf>[-+.0-9eE]{1,32}):(?P<vid>\d{1,18}))$")
CURSOR_PATTERN = _CURSOR.pattern


def queue_page(*, conn: Connection, sort: Sort, after: str | None, limit: int, suggested: str | None = None,
               model_version: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the pending queue and the cursor of the next (None on the last). Keyset-paginated, so a
    page costs the same at any depth; the suggested-class filter only sees cases whose suggestion is shown."""
    where: list[Any] = [PENDING]
    if suggested:
        where += [SHOWN, CASE.c.prediction == suggested]
    if model_version:
        where.append(CASE.c.model_version == model_version)
    part, key = _parse_cursor(after)
    rows: list[dict[str, Any]] = []
    if sort == "confidence" and part in (None, "v"):
        ranked = select(CASE).where(*where, RANKED)
        if key is not None:
            ranked = ranked.where(tuple_(CASE.c.confidence, CASE.c.id) > tuple_(*key))
        rows = _fetch(conn, ranked.order_by(CASE.c.confidence, CASE.c.id), limit)
        part, key = "h", None
    if len(rows) < limit:
        rest = select(CASE).where(*where)
        if sort == "confidence":
            rest = rest.where(not_(RANKED))
        if key is not None:
            rest = rest.where(CASE.c.id > key[-1])
        rows += _fetch(conn, rest.order_by(CASE.c.id), limit - len(rows))
    return rows, _cursor_after(sort, rows[-1]) if len(rows) == limit else None


def _fetch(conn: Connection, query: Select, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(query.limit(limit)).mappings()]


def _parse_cursor(after: str | None) -> tuple[str | None, tuple[Any, ...] | None]:
    if not after:
        return None, None
    m = _CURSOR.match(after)
    if m is None:
        raise InvalidInput("after: not a cursor from this page", field="after")
    if m["part"]:
        return m["part"], (int(m["id"]),)
    try:
        return "v", (float(m["conf"]), int(m["vid"]))
    except ValueError:
        raise InvalidInput("after: not a cursor from this page", field="after") from None


def _cursor_after(sort: Sort, row: Mapping[str, Any]) -> str:
    if sort == "confidence" and not model_hidden(row) and row["confidence"] is not None:
        return f"v{row['confidence']!r}:{row['id']}"
    return f"{'h' if sort == 'confidence' else 'a'}{row['id']}"


def history(*, conn: Connection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Everything that happened to a case, oldest first: its first steps (read off the row the caller
    already has), then the stored events."""
    rows = conn.execute(select(EVENT).where(EVENT.c.case_id == case["id"]).order_by(EVENT.c.id)).mappings()
    return first_events(case) + [dict(r) for r in rows]
