"""Deadlines: a queued case is due `review.due_minutes` after it arrives (per class where set); once past due,
the configured fallback acts, within one sweep period.

`stamp` sets `due_at` on new case rows before they are stored (ingest). `sweep` runs each reload period in
every process: it takes the overdue cases one at a time with a conditional update (the case must still be
pending and not yet overdue), so two processes never apply one fallback twice, and writes the history event
and the webhook in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from decider.cases.service import CASE, EVENT, get_case
from decider.config import ReviewSettings
from decider.db import now
from decider.webhooks.outbox import enqueue

log = logging.getLogger("decider.review")
FALLBACK_ACTOR = "fallback"  # decided_by of a case the deadline decided
SWEEP = 200  # overdue cases handled per sweep


def due_minutes(settings: ReviewSettings, label: str | None) -> float:
    return settings.due_minutes_by_class.get(label or "", settings.due_minutes)


def stamp(rows: Sequence[dict[str, Any]], settings: ReviewSettings) -> None:
    """Give each queued row its deadline (None where none applies), in place."""
    for row in rows:
        minutes = due_minutes(settings, row.get("prediction")) if row["route"] == "queue" else 0
        row["due_at"] = row["created_at"] + timedelta(minutes=minutes) if minutes else None


def fallback_values(case: Mapping[str, Any], settings: ReviewSettings, at: datetime) -> dict[str, Any]:
    """What the fallback changes on an overdue case: a decision (model or fixed label), or only the mark."""
    values: dict[str, Any] = {"overdue_at": at}
    if settings.fallback == "model" and case["prediction"] is not None:
        decision = case["prediction"]
    elif settings.fallback == "label" and settings.fallback_label:
        decision = settings.fallback_label
    else:
        return values  # escalate, or nothing to decide with: it stays first in the queue
    return values | {"status": "decided", "decision": decision, "decided_by": FALLBACK_ACTOR, "decided_at": at,
                     "review_status": "expired", "claimed_by": None, "claim_expires_at": None}


def sweep(engine: Engine, settings: ReviewSettings) -> int:
    """Apply the fallback to every case past due; how many were handled."""
    at = now()
    with engine.connect() as conn:
        due = list(conn.execute(select(CASE.c.id).where(
            CASE.c.review_status == "pending", CASE.c.status == "pending", CASE.c.overdue_at.is_(None),
            CASE.c.due_at.is_not(None), CASE.c.due_at <= at).order_by(CASE.c.due_at).limit(SWEEP)).scalars())
    for case_id in due:
        with engine.begin() as conn:
            fall_back(conn, case_id, settings, at)
    return len(due)


def fall_back(conn: Connection, case_id: int, settings: ReviewSettings, at: datetime) -> bool:
    case = get_case(conn=conn, case_id=case_id)
    values = fallback_values(case, settings, at)
    done = conn.execute(update(CASE).where(
        CASE.c.id == case_id, CASE.c.status == "pending", CASE.c.overdue_at.is_(None)).values(**values)).rowcount
    if not done:
        return False  # decided, or handled by another process, since the sweep looked
    decided = "decision" in values
    detail = {"due_at": case["due_at"].isoformat(), "fallback": settings.fallback, "decision": values.get("decision")}
    conn.execute(insert(EVENT).values(case_id=case_id, kind="fallback" if decided else "overdue",
                                      actor=FALLBACK_ACTOR, at=at, detail=detail))
    after = get_case(conn=conn, case_id=case_id)
    enqueue(conn, "case.decided" if decided else "case.overdue", [after],
            extra={"fallback": True, "due_at": case["due_at"].isoformat()})
    log.info("case %s past its deadline: %s", case_id, f"decided {values['decision']!r} by fallback" if decided
             else "marked overdue")
    return True
