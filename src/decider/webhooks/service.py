"""Endpoints and deliveries, as the CLI and the admin page manage them: one function per action."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from decider.config import WebhookSettings
from decider.db import now
from decider.errors import InvalidInput, NotFound
from decider.webhooks.courier import refused_destination
from decider.webhooks.outbox import DELIVERY, ENDPOINT, EVENT_TYPES, forget_endpoints
from decider.webhooks.signing import new_secret

ROTATION_GRACE = timedelta(hours=24)  # the old secret keeps signing beside the new one this long


def add_endpoint(conn: Connection, *, client: str, url: str, events: Sequence[str], actor: str,
                 settings: WebhookSettings) -> tuple[int, str]:
    """Register `url` for `client`'s cases; returns (id, secret): the only time the secret is shown."""
    from decider.auth.tables import ApiKey

    keys = ApiKey.__table__  # type: ignore[attr-defined]
    if conn.execute(select(keys.c.id).where(keys.c.name == client, keys.c.scope == "client")).first() is None:
        raise InvalidInput(f"client: no client key named {client!r} (decider keys list)", field="client")
    unknown = [e for e in events if e != "*" and e not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(f"events: {', '.join(unknown)} not among {', '.join(EVENT_TYPES)} (or *)", field="events")
    problem = refused_destination(url, settings.allow_private)
    if problem:
        raise InvalidInput(problem, field="url")
    secret = new_secret()
    endpoint_id = conn.execute(insert(ENDPOINT).values(
        client=client, url=url, secret=secret, events=list(events) or ["*"], enabled=True, created_by=actor,
        created_at=now()).returning(ENDPOINT.c.id)).scalar_one()
    forget_endpoints(conn)
    return endpoint_id, secret


def endpoint(conn: Connection, endpoint_id: int) -> dict[str, Any]:
    row = conn.execute(select(ENDPOINT).where(ENDPOINT.c.id == endpoint_id)).mappings().first()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return dict(row)


def rotate_secret(conn: Connection, endpoint_id: int) -> str:
    """A new secret; the old one signs beside it for ROTATION_GRACE (two signatures per delivery)."""
    old = endpoint(conn, endpoint_id)
    secret = new_secret()
    conn.execute(update(ENDPOINT).where(ENDPOINT.c.id == endpoint_id).values(
        secret=secret, previous_secret=old["secret"], previous_until=now() + ROTATION_GRACE))
    return secret


def set_enabled(conn: Connection, endpoint_id: int, enabled: bool) -> None:
    endpoint(conn, endpoint_id)
    conn.execute(update(ENDPOINT).where(ENDPOINT.c.id == endpoint_id).values(enabled=enabled))
    forget_endpoints(conn)


def endpoints(conn: Connection) -> list[dict[str, Any]]:
    """Every endpoint (never its secret) with its deliveries counted by status."""
    counts: dict[tuple[int, str], int] = {
        (r.endpoint_id, r.status): r.n for r in conn.execute(
            select(DELIVERY.c.endpoint_id, DELIVERY.c.status, func.count().label("n"))
            .group_by(DELIVERY.c.endpoint_id, DELIVERY.c.status))}
    rows = conn.execute(select(ENDPOINT.c.id, ENDPOINT.c.client, ENDPOINT.c.url, ENDPOINT.c.events,
                               ENDPOINT.c.enabled, ENDPOINT.c.created_by, ENDPOINT.c.created_at)
                        .order_by(ENDPOINT.c.id)).mappings()
    return [dict(r) | {s: counts.get((r["id"], s), 0) for s in ("pending", "delivered", "failed")} for r in rows]


def replay(conn: Connection, *, actor: str, delivery_id: int | None = None, case_id: int | None = None,
           failed: bool = False, endpoint_id: int | None = None) -> int:
    """Send again (same `webhook-id`): one delivery, a case's, or every failed one (of one endpoint); how many
    were queued. The retry period starts again."""
    where = [] if endpoint_id is None else [DELIVERY.c.endpoint_id == endpoint_id]
    if delivery_id is not None:
        where.append(DELIVERY.c.id == delivery_id)
    if case_id is not None:
        where.append(DELIVERY.c.case_id == case_id)
    if failed:
        where.append(DELIVERY.c.status == "failed")
    if delivery_id is None and case_id is None and not failed:
        raise InvalidInput("replay: name a delivery, a case, or --failed")
    result = conn.execute(update(DELIVERY).where(*where).values(
        status="pending", next_attempt_at=now(), lease_until=None, lease_token=None, created_at=now(),
        detail={"replayed_by": actor, "replayed_at": now().isoformat()}))
    return int(result.rowcount)


def deliveries(conn: Connection, case_id: int) -> list[dict[str, Any]]:
    """A case's deliveries, oldest first, with the endpoint's URL (never its secret)."""
    query = select(DELIVERY, ENDPOINT.c.url).join(ENDPOINT, ENDPOINT.c.id == DELIVERY.c.endpoint_id).where(
        DELIVERY.c.case_id == case_id).order_by(DELIVERY.c.id)
    return [dict(r) for r in conn.execute(query).mappings()]
