"""What monitoring reads from the database: the cases of a window, and the counts behind /metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from decider.cases.service import CASE
from decider.db import now

MAX_ROWS = 100_000  # a window is cut to its newest cases past this, and says so
COLUMNS = ("id", "created_at", "model_version", "features", "prediction", "confidence", "route", "status",
           "decision", "decided_by", "audit", "review_status", "review_label", "reviewed_at", "outcome",
           "outcome_at", "policy_version", "novelty", "audit_probability")


def window_rows(*, conn: Connection, since: datetime | None, until: datetime | None, last: int | None,
                progress: Callable[[int], None] | None = None) -> tuple[list[dict[str, Any]], bool]:
    """The newest `last` cases (at most MAX_ROWS) created in [since, until), oldest first; and whether cut."""
    cap = min(last or MAX_ROWS, MAX_ROWS)
    query = select(*(CASE.c[name] for name in COLUMNS))
    if since is not None:
        query = query.where(CASE.c.created_at >= since)
    if until is not None:
        query = query.where(CASE.c.created_at < until)
    query = query.order_by(CASE.c.created_at.desc(), CASE.c.id.desc()).limit(cap + 1)
    rows: list[dict[str, Any]] = []
    result = conn.execution_options(yield_per=2000).execute(query).mappings()
    for part in result.partitions():
        rows.extend(dict(r) for r in part)
        if progress:
            progress(len(part))
    cut = len(rows) > cap
    rows = rows[:cap]
    rows.reverse()
    return rows, cut and last is None


def count_window(*, conn: Connection, since: datetime | None, until: datetime | None) -> int:
    query = select(func.count()).select_from(CASE)
    if since is not None:
        query = query.where(CASE.c.created_at >= since)
    if until is not None:
        query = query.where(CASE.c.created_at < until)
    return int(conn.execute(query).scalar_one())


@dataclass(frozen=True)
class Totals:
    """The database's view for /metrics, read at scrape time so every worker reports the same."""

    queue_depth: int
    oldest_pending_seconds: float
    reviews_done: dict[str, int]  # decision | audit
    overturned: int


def totals(*, conn: Connection) -> Totals:
    pending = conn.execute(select(func.count(), func.min(CASE.c.created_at))
                           .where(CASE.c.review_status == "pending")).one()
    done = conn.execute(select(CASE.c.audit, func.count()).where(CASE.c.review_status == "done")
                        .group_by(CASE.c.audit)).all()
    overturned = conn.execute(select(func.count()).where(and_(
        CASE.c.audit.is_(True), CASE.c.route == "auto", CASE.c.review_status == "done",
        CASE.c.review_label != CASE.c.decision))).scalar_one()
    oldest = pending[1]
    reviews = {"decision": 0, "audit": 0}
    for audit, n in done:
        reviews["audit" if audit else "decision"] += n
    return Totals(queue_depth=int(pending[0]),
                  oldest_pending_seconds=(now() - oldest).total_seconds() if oldest is not None else 0.0,
                  reviews_done=reviews, overturned=int(overturned))
