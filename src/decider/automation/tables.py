"""Every policy that has been in force, so each case's routing can be explained later."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from decider.db import UTCDateTime, now


class PolicyChange(SQLModel, table=True):
    __tablename__ = "policy_change"

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=20, index=True)
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    started_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    source: str = Field(default="config", max_length=100)
    # What the new policy would have done on recent cases next to the old one, when it loosened automation.
    replay: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # For a move made by autopilot: the classes moved and the evidence behind each move.
    evidence: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class AutopilotClass(SQLModel, table=True):
    """Where autopilot stands for one class of one model (decider/autopilot.State); no row: assist."""

    __tablename__ = "autopilot_class"
    __table_args__ = (UniqueConstraint("model_version", "label", name="uq_autopilot_class_model_label"),)

    id: int | None = Field(default=None, primary_key=True)
    model_version: str = Field(max_length=100)
    label: str = Field(max_length=100)
    threshold: float = 1.0
    since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    looks: int = 0
    deciding_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
