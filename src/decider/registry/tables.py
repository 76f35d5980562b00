"""The history of model deployments: which version held which role, from when, set by whom."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from decider.db import UTCDateTime, now


class ModelSwitch(SQLModel, table=True):
    __tablename__ = "model_switch"

    id: int | None = Field(default=None, primary_key=True)
    role: str = Field(max_length=20)  # live | candidate | shadow
    model_id: str = Field(max_length=100)
    previous: str | None = Field(default=None, max_length=100)
    actor: str = Field(max_length=100)
    at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
