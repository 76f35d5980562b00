"""What monitoring reads from the database: the cases of a window (whole, or only what changed since the last
look), and the counts behind /metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    Text,
    and_,
    case,
    cast,
    column,
    func,
    or_,
    select,
    true,
)

from decider.cases.service import CASE, EVENT
from decider.db import now
from decider.monitoring.buckets import hour_start
from decider.monitoring.categories import CategoryBins
from decider.monitoring.tally import JUDGED_FIELDS, NO_REVIEW, Bins, Chunk

MAX_ROWS = 100_000  # the most `last` may ask for
# The columns a tally reads (monitoring/tally.py); the features the card names come as floats f0, f1, ...
COLUMNS = ("id", "created_at", "model_version", "prediction", "confidence", "route", "audit", "review_status",
           "review_label", "reviewed_at", "outcome", "decision", "policy_version", "novelty", "audit_probability")
CHUNK = 2000
COLUMN_CHUNK = 10_000  # cases per fetch on a first read (case_columns)


@dataclass
class _Part:
    """Some rows of a result, with its column names."""

    names: list[str]
    rows: Sequence[Any]

    def keys(self) -> list[str]:
        return self.names

    def __iter__(self) -> Any:
        return iter(self.rows)


def _features(bins: Mapping[str, Bins]) -> list[ColumnElement[Any]]:
    """Each feature taken out of the JSON by the database (which costs far less than decoding every case's
    JSON in Python), as f0, f1, ... in card order: a float, or for a category feature the value as stored."""
    return [(_category(name) if isinstance(b, CategoryBins) else CASE.c.features[name].as_float()).label(f"f{i}")
            for i, (name, b) in enumerate(bins.items())]


def _category(name: str) -> ColumnElement[Any]:
    """A category (or boolean) value out of the JSON on SQLite: its text, a number as it is, and true and false as
    "true" and "false" (json_extract alone reads them as 1 and 0). The path as SQLAlchemy writes it."""
    path = f'$."{name}"'
    kind = func.json_type(CASE.c.features, path)
    return case((kind.in_(("true", "false")), kind), else_=func.json_extract(CASE.c.features, path))


def _with_features(columns: Sequence[Any], bins: Mapping[str, Bins], dialect: str) -> Select[Any]:
    """SELECT `columns` and the features (f0, f1, ... as `_features`) FROM case. On PostgreSQL from one
    json_to_record per case: each `->>` parses the JSON again, ten of them cost 5.4 s per 100,000 cases
    against 0.6 s for one json_to_record."""
    if dialect != "postgresql" or not bins:
        return select(*columns, *_features(bins))
    record = func.json_to_record(CASE.c.features).table_valued(
        *(column(name, Text if isinstance(b, CategoryBins) else Float) for name, b in bins.items())
    ).render_derived(name="features_of", with_types=True)
    return select(*columns, *(record.c[name].label(f"f{i}") for i, name in enumerate(bins))).select_from(
        CASE.outerjoin(record, true()))  # outer: a case whose features are null is kept


def _select(bins: Mapping[str, Bins], dialect: str = "") -> Select[Any]:
    """The cases as tallies read them: the features as `_features` gives them; `novelty` as text, decoded
    only when it holds a reason (most hold none)."""
    return _with_features([CASE.c[name] if name != "novelty" else cast(CASE.c.novelty, Text).label(name)
                           for name in COLUMNS], bins, dialect)


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


def window_rows(*, conn: Connection, features: Mapping[str, Bins], since: datetime | None, until: datetime | None,
                cut: tuple[datetime, int] | None = None,
                progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """The cases created in [since, until) (and from `cut` on), oldest first."""
    query = _window(_select(features, conn.dialect.name), since, until, cut).order_by(CASE.c.created_at, CASE.c.id)
    rows: list[dict[str, Any]] = []
    result = conn.execution_options(yield_per=CHUNK).execute(query)
    keys = list(result.keys())
    for part in result.partitions():
        rows.extend(_rows(_Part(keys, part)))
        if progress:
            progress(len(part))
    return rows


def rows_by_id(*, conn: Connection, features: Mapping[str, Bins], ids: Iterable[int]) -> list[dict[str, Any]]:
    """Those cases, oldest first."""
    ids = sorted(set(ids))
    rows: list[dict[str, Any]] = []
    for i in range(0, len(ids), CHUNK):
        rows.extend(_rows(conn.execute(_select(features, conn.dialect.name).where(CASE.c.id.in_(ids[i:i + CHUNK])))))
    return sorted(rows, key=lambda r: (r["created_at"], r["id"]))


def _hour(at: Any, dialect: str) -> ColumnElement[int]:
    """buckets.hour_index of a timestamp column, computed by the database."""
    if dialect == "sqlite":  # stored as text in UTC; strftime('%s') reads it as whole seconds since 1970
        return cast(func.strftime("%s", at), Integer) // 3600
    return cast(func.floor(func.extract("epoch", at) / 3600), BigInteger)


def case_columns(*, conn: Connection, bins: Mapping[str, Bins], since: datetime | None, until: datetime | None,
                 progress: Callable[[int], None] | None = None) -> Iterator[Chunk]:
    """The cases created in [since, until), oldest first, as columns in chunks: only what a tally reads, the
    hours computed by the database. For a first read of many cases, where a mapping per case is what costs."""
    dialect = conn.dialect.name
    query = _window(_with_features([
        CASE.c.id, _hour(CASE.c.created_at, dialect), *(CASE.c[name] for name in JUDGED_FIELDS), CASE.c.confidence,
        case((CASE.c.review_status == "done", _hour(CASE.c.reviewed_at, dialect))),
        cast(CASE.c.novelty, Text)], bins, dialect), since, until).order_by(CASE.c.created_at, CASE.c.id)
    judged = slice(2, 2 + len(JUDGED_FIELDS))
    route, audit, prediction = (2 + JUDGED_FIELDS.index(f) for f in ("route", "audit", "prediction"))
    at = 2 + len(JUDGED_FIELDS)
    for part in _raw_chunks(conn, query):
        cols = list(zip(*part, strict=True))
        confidence = cols[at]
        reviewed = np.array(cols[at + 1], dtype=float)
        yield Chunk(
            ids=np.array(cols[0], dtype=np.int64), hours=np.array(cols[1], dtype=np.int64),
            keys=list(zip(*cols[judged], [c is None for c in confidence], strict=True)),
            auto=np.array(list(map("auto".__eq__, cols[route])), dtype=bool), audit=np.array(cols[audit], dtype=bool),
            prediction=list(cols[prediction]), confidence=np.array(confidence, dtype=float),
            reviewed=np.where(np.isnan(reviewed), NO_REVIEW, reviewed).astype(np.int64), novelty=list(cols[at + 2]),
            features={name: list(cols[at + 3 + i]) if isinstance(b, CategoryBins)
                      else np.array(cols[at + 3 + i], dtype=float) for i, (name, b) in enumerate(bins.items())})
        if progress:
            progress(len(part))


def _raw_chunks(conn: Connection, query: Select[Any]) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of `query` as the driver's own tuples, COLUMN_CHUNK at a time: SQLAlchemy's Row objects and
    result processing cost a third of a first read. The values are rendered into the SQL (the window's
    bounds and the card's feature names), so that no bind processing is needed either; on PostgreSQL the
    rows come through a server-side cursor, so a million of them are never held at once."""
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw: Any = conn.connection.driver_connection
    cursor = raw.cursor(name="decider_monitoring") if conn.dialect.name == "postgresql" else raw.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(COLUMN_CHUNK):
            yield rows
    finally:
        cursor.close()


def hour_bounds(*, conn: Connection, hour: int) -> tuple[datetime, datetime]:
    """The earliest and latest created_at of the cases of one hour (ix_case_created_at)."""
    query = select(func.min(CASE.c.created_at), func.max(CASE.c.created_at)).where(
        CASE.c.created_at >= hour_start(hour), CASE.c.created_at < hour_start(hour + 1))
    first, last = conn.execute(query).one()
    return first, last


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
