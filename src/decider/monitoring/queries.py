"""What monitoring reads from the database: the cases of a window (whole, or only what changed since the last
look), and the counts behind /metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Text, and_, cast, func, or_, select

from decider.cases.service import CASE, EVENT
from decider.db import now

MAX_ROWS = 100_000  # the most `last` may ask for
# The columns a tally reads (monitoring/tally.py); the features the card names come as floats f0, f1, ...
COLUMNS = ("id", "created_at", "model_version", "prediction", "confidence", "route", "audit", "review_status",
           "review_label", "reviewed_at", "outcome", "decision", "policy_version", "novelty", "audit_probability")
CHUNK = 2000


@dataclass
class _Part:
    """Some rows of a result, with its column names."""

    names: list[str]
    rows: Sequence[Any]

    def keys(self) -> list[str]:
        return self.names

    def __iter__(self) -> Any:
        return iter(self.rows)


def _select(features: Sequence[str]) -> Select[Any]:
    """The cases as tallies read them: each of `features` taken out of the JSON by the database, as a float,
    which costs far less than decoding every case's JSON in Python; `novelty` as text, decoded only when it
    holds a reason (most hold none)."""
    return select(*(CASE.c[name] if name != "novelty" else cast(CASE.c.novelty, Text).label(name) for name in COLUMNS),
                  *(CASE.c.features[name].as_float().label(f"f{i}") for i, name in enumerate(features)))


def _rows(result: Any) -> list[dict[str, Any]]:
    keys = list(result.keys())
    rows = [dict(zip(keys, r, strict=True)) for r in result]
    for r in rows:
        text = r["novelty"]
        r["novelty"] = None if text is None else ([] if text == "[]" else json.loads(text))
    return rows


def _window(query: Select[Any], since: datetime | None, until: datetime | None,
            cut: tuple[datetime, int] | None = None) -> Select[Any]:
    if since is not None:
        query = query.where(CASE.c.created_at >= since)
    if until is not None:
        query = query.where(CASE.c.created_at < until)
    if cut is not None:  # the newest N: from the N-th newest (created_at, id) on
        query = query.where(or_(CASE.c.created_at > cut[0], and_(CASE.c.created_at == cut[0], CASE.c.id >= cut[1])))
    return query


def window_rows(*, conn: Connection, features: Sequence[str], since: datetime | None, until: datetime | None,
                cut: tuple[datetime, int] | None = None,
                progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """The cases created in [since, until) (and from `cut` on), oldest first."""
    query = _window(_select(features), since, until, cut).order_by(CASE.c.created_at, CASE.c.id)
    rows: list[dict[str, Any]] = []
    result = conn.execution_options(yield_per=CHUNK).execute(query)
    keys = list(result.keys())
    for part in result.partitions():
        rows.extend(_rows(_Part(keys, part)))
        if progress:
            progress(len(part))
    return rows


def rows_by_id(*, conn: Connection, features: Sequence[str], ids: Iterable[int]) -> list[dict[str, Any]]:
    """Those cases, oldest first."""
    ids = sorted(set(ids))
    rows: list[dict[str, Any]] = []
    for i in range(0, len(ids), CHUNK):
        rows.extend(_rows(conn.execute(_select(features).where(CASE.c.id.in_(ids[i:i + CHUNK])))))
    return sorted(rows, key=lambda r: (r["created_at"], r["id"]))


def created_since(*, conn: Connection, since: datetime) -> list[tuple[int, datetime]]:
    """(id, created_at) of the cases created from `since` on (ix_case_created_at)."""
    return [(r[0], r[1]) for r in conn.execute(select(CASE.c.id, CASE.c.created_at).where(CASE.c.created_at >= since))]


def events_after(*, conn: Connection, mark: int) -> list[tuple[int, int, datetime]]:
    """(id, case_id, at) of every case event past `mark` (reviews, audits, outcomes: whatever changed a case)."""
    query = select(EVENT.c.id, EVENT.c.case_id, EVENT.c.at).where(EVENT.c.id > mark).order_by(EVENT.c.id)
    return [(r[0], r[1], r[2]) for r in conn.execute(query)]


def event_mark(*, conn: Connection, before: datetime) -> int:
    """The newest event id among those written before `before`: every event after it is read as a change."""
    return int(conn.execute(select(func.max(EVENT.c.id)).where(EVENT.c.at < before)).scalar() or 0)


def newest_cut(*, conn: Connection, since: datetime | None, until: datetime | None,
               last: int) -> tuple[datetime, int] | None:
    """(created_at, id) of the `last`-th newest case of [since, until); None when there are fewer."""
    query = _window(select(CASE.c.created_at, CASE.c.id), since, until).order_by(
        CASE.c.created_at.desc(), CASE.c.id.desc()).offset(last - 1).limit(1)
    row = conn.execute(query).first()
    return (row[0], row[1]) if row else None


def first_created(*, conn: Connection, since: datetime | None, until: datetime | None) -> datetime | None:
    return conn.execute(_window(select(func.min(CASE.c.created_at)), since, until)).scalar()


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
