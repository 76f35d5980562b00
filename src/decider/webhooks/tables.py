"""Endpoints registered per client, and the outbox: one delivery row per event and endpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Text
from sqlmodel import Field, SQLModel

from decider.db import BigId, UTCDateTime, now


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoint"

    id: int | None = Field(default=None, primary_key=True)
    client: str = Field(max_length=100, index=True)  # the client key's name: its cases' events go here
    url: str = Field(max_length=2000)
    # The signing secret (whsec_ + base64): shown once when made, used to sign every delivery. The previous
    # one keeps signing beside it until previous_until, so a receiver can switch without losing an event.
    secret: str = Field(max_length=200)
    previous_secret: str | None = Field(default=None, max_length=200)
    previous_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    events: list[str] = Field(sa_column=Column(JSON, nullable=False))  # event types, or ["*"]
    enabled: bool = True
    created_by: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """One event on its way to one endpoint. `msg_id` is the event's id (the `webhook-id` header), the same on
    every attempt and every endpoint, so a receiver can drop a duplicate."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    msg_id: str = Field(max_length=40, index=True)
    endpoint_id: int = Field(sa_column=Column(ForeignKey("webhook_endpoint.id"), nullable=False))
    case_id: int | None = Field(default=None, sa_column=Column(BigId, ForeignKey("case.id"), index=True))
    event_type: str = Field(max_length=40)
    body: str = Field(sa_column=Column(Text, nullable=False))  # the exact bytes signed and sent, every attempt
    status: str = Field(default="pending", max_length=10)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_token: str | None = Field(default=None, max_length=40)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # who replayed it, and when
