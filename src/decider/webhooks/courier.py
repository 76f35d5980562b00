"""Delivering the outbox: each server process claims due deliveries under a lease, sends them, and records
the answer; a failure is retried with exponential backoff and jitter until `webhooks.retry_hours`, then
marked failed (and shown: `decider webhooks list`, the case's deliveries).

Claiming sets a lease with a token in one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so two
processes never send the same delivery at once; a result is recorded only under the token that claimed it.
A process killed mid-send leaves the lease to expire, and another (or the restarted one) sends it again with
the same `webhook-id`: at least once, and exactly once while no send outlives its lease.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, or_, select, update

from decider.config import WebhookSettings
from decider.db import now
from decider.webhooks.outbox import DELIVERY, ENDPOINT
from decider.webhooks.signing import headers

log = logging.getLogger("decider.webhooks")
CLAIM = 50  # deliveries claimed per round trip to the database


def refused_destination(url: str, allow_private: bool) -> str | None:
    """Why decider will not call `url` (None: it will): not http(s), or a host that resolves to a private,
    loopback, link-local or otherwise non-public address while `webhooks.allow_private` is off."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"url: {url!r} is not an http:// or https:// URL with a host"
    if allow_private:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        return f"url: host {parts.hostname!r} does not resolve ({exc.strerror or exc})"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return (f"url: {parts.hostname!r} resolves to {address}, a private or loopback address; set "
                    "webhooks.allow_private = true to allow it")
    return None


def backoff(settings: WebhookSettings, attempts: int) -> float:
    """Seconds before the next attempt: doubling from the base, capped, with jitter (half to all of it) so
    that many deliveries failing together do not retry together."""
    delay = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** max(attempts - 1, 0))
    return delay * random.uniform(0.5, 1.0)


@dataclass
class Courier:
    engine: Engine
    settings_of: Any  # () -> WebhookSettings: read each round, so a config reload applies

    def claim(self, limit: int = CLAIM) -> tuple[str, list[dict[str, Any]]]:
        at, token = now(), uuid.uuid4().hex
        lease = at + timedelta(seconds=self.settings_of().lease_seconds)
        due = select(DELIVERY.c.id).where(
            DELIVERY.c.status == "pending", DELIVERY.c.next_attempt_at <= at,
            or_(DELIVERY.c.lease_until.is_(None), DELIVERY.c.lease_until < at),
        ).order_by(DELIVERY.c.next_attempt_at, DELIVERY.c.id).limit(limit)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = list(conn.execute(due).scalars())
            if not ids:
                return token, []
            conn.execute(update(DELIVERY).where(DELIVERY.c.id.in_(ids)).values(lease_until=lease, lease_token=token))
            rows = conn.execute(select(DELIVERY, ENDPOINT.c.url, ENDPOINT.c.secret, ENDPOINT.c.previous_secret,
                                       ENDPOINT.c.previous_until, ENDPOINT.c.enabled)
                                .join(ENDPOINT, ENDPOINT.c.id == DELIVERY.c.endpoint_id)
                                .where(DELIVERY.c.id.in_(ids), DELIVERY.c.lease_token == token)
                                .order_by(DELIVERY.c.id)).mappings()
            return token, [dict(r) for r in rows]

    def round(self, client: httpx.Client) -> int:
        """Claim and send one batch of due deliveries; how many were claimed."""
        settings = self.settings_of()
        token, batch = self.claim()
        for row in batch:
            self.send(client, settings, token, row)
        return len(batch)

    def send(self, client: httpx.Client, settings: WebhookSettings, token: str, row: dict[str, Any]) -> None:
        at = now()
        signers = [row["secret"]]
        if row["previous_secret"] and row["previous_until"] and row["previous_until"] > at:
            signers.append(row["previous_secret"])
        code, error = None, None
        refused = "endpoint disabled" if not row["enabled"] else refused_destination(row["url"],
                                                                                      settings.allow_private)
        if refused:
            error = refused
        else:
            try:
                answer = client.post(row["url"], content=row["body"].encode(),
                                     headers=headers(signers, row["msg_id"], int(time.time()), row["body"]),
                                     timeout=settings.timeout_seconds)
                code = answer.status_code
                if not 200 <= code < 300:
                    error = f"answered {code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        attempts = row["attempts"] + 1
        if error is None:
            values: dict[str, Any] = {"status": "delivered", "delivered_at": now()}
        elif refused or at - row["created_at"] >= timedelta(hours=settings.retry_hours):
            values = {"status": "failed"}
            log.warning("webhook %s to endpoint %s failed for good after %d attempts: %s", row["msg_id"],
                        row["endpoint_id"], attempts, error)
        else:
            values = {"next_attempt_at": now() + timedelta(seconds=backoff(settings, attempts))}
        values |= {"attempts": attempts, "last_status_code": code, "last_error": error, "lease_until": None,
                   "lease_token": None}
        with self.engine.begin() as conn:  # only under our own lease: a late result after it expired is dropped
            conn.execute(update(DELIVERY).where(DELIVERY.c.id == row["id"], DELIVERY.c.lease_token == token)
                         .values(**values))

    async def run(self) -> None:
        """This process's delivery loop (started from the app's lifespan)."""
        with httpx.Client(follow_redirects=False) as client:
            while True:
                try:
                    while await asyncio.to_thread(self.round, client) == CLAIM:
                        pass  # a full batch: there may be more due now
                except Exception:  # keep delivering: a database hiccup must not end the loop
                    log.exception("webhook deliveries: this round failed; trying again in the next")
                await asyncio.sleep(self.settings_of().poll_seconds)
