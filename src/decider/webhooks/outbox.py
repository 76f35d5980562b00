"""Writing events: `enqueue` adds one delivery per subscribed endpoint in the caller's transaction, so the event
exists exactly when the change it reports is committed (a crash can delay it, never lose it)."""

from __future__ import annotations

import json
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from decider.cases.service import public
from decider.db import now
from decider.webhooks.tables import WebhookDelivery, WebhookEndpoint

ENDPOINT = WebhookEndpoint.__table__  # type: ignore[attr-defined]
DELIVERY = WebhookDelivery.__table__  # type: ignore[attr-defined]
EVENT_TYPES = ("case.decided", "case.corrected", "case.overdue")
# What an event says of its case: what the client may see of it (service.public), without the features.
DATA_FIELDS = ("id", "key", "status", "decision", "decided_by", "decided_at", "route", "level", "prediction",
               "confidence", "model_version", "created_at")
ENDPOINTS_FRESH_SECONDS = 1.0  # how long a process uses the endpoints it read (see enabled_endpoints)
Endpoints = dict[str, list[tuple[int, list[str]]]]  # client -> its enabled endpoints' (id, events)
_endpoints: weakref.WeakKeyDictionary[Engine, tuple[float, Endpoints]] = weakref.WeakKeyDictionary()


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def event_data(case: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    shown = public(case)
    return {name: _json(shown.get(name)) for name in DATA_FIELDS} | dict(extra or {})


def subscribed(events: Sequence[str], event_type: str) -> bool:
    return "*" in events or event_type in events


def enqueue(conn: Connection, event_type: str, cases: Sequence[Mapping[str, Any]],
            extra: Mapping[str, Any] | None = None, delay_seconds: float = 0.0) -> int:
    """One event per case, to every enabled endpoint of the case's client that takes `event_type`; the number
    of deliveries written, in one insert. `delay_seconds` holds them back (a person's decision while it can
    still be undone)."""
    if not cases:
        return 0
    endpoints = {client: [ep for ep, events in eps if subscribed(events, event_type)]
                 for client, eps in enabled_endpoints(conn).items()}
    if not any(endpoints.values()):
        return 0
    at = now()
    rows = []
    for case in cases:
        targets = endpoints.get(case["client"])
        if not targets:
            continue
        msg_id = "msg_" + uuid.uuid4().hex
        body = json.dumps({"type": event_type, "timestamp": at.isoformat(), "data": event_data(case, extra)},
                          separators=(",", ":"))
        rows += [{"msg_id": msg_id, "endpoint_id": endpoint_id, "case_id": case["id"], "event_type": event_type,
                  "body": body, "status": "pending", "attempts": 0,
                  "next_attempt_at": at + timedelta(seconds=delay_seconds), "created_at": at}
                 for endpoint_id in targets]
    if rows:
        conn.execute(insert(DELIVERY), rows)
    return len(rows)


def enabled_endpoints(conn: Connection) -> Endpoints:
    """Every client's enabled endpoints, read from the database at most once a second per engine. Ingest asks
    on every batch; on PostgreSQL the query was a round trip that, with the pool's ping, cut single-case
    throughput by a third (bench/ingest.py). So an endpoint added, enabled or disabled by another process (the
    CLI, another worker or host) counts from at most ENDPOINTS_FRESH_SECONDS later; in this process at once
    (`forget_endpoints`). The courier checks `enabled` again at each send."""
    cached = _endpoints.get(conn.engine)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    read_at = time.monotonic()
    found: Endpoints = {}
    for ep in conn.execute(select(ENDPOINT.c.id, ENDPOINT.c.client, ENDPOINT.c.events)
                           .where(ENDPOINT.c.enabled.is_(True)).order_by(ENDPOINT.c.id)):
        found.setdefault(ep.client, []).append((ep.id, list(ep.events)))
    _endpoints[conn.engine] = (read_at + ENDPOINTS_FRESH_SECONDS, found)
    return found


def forget_endpoints(conn: Connection) -> None:
    """The next `enabled_endpoints` reads the database again (this process changed an endpoint)."""
    _endpoints.pop(conn.engine, None)


def decided_by_model(conn: Connection, results: Sequence[tuple[Mapping[str, Any], bool]]) -> int:
    """`case.decided` for the cases just stored that the model decided (ingest's transaction)."""
    return enqueue(conn, "case.decided", [row for row, created in results if created and row["route"] == "auto"])


def cancel_unsent(conn: Connection, case_id: int, event_type: str) -> int:
    """Withdraw a case's events of `event_type` not sent yet (an undone decision): status `cancelled`."""
    return int(conn.execute(update(DELIVERY).where(
        DELIVERY.c.case_id == case_id, DELIVERY.c.event_type == event_type, DELIVERY.c.status == "pending",
        DELIVERY.c.attempts == 0).values(status="cancelled")).rowcount)
