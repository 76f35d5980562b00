"""The history of model deployments: which version held which role, from when, set by whom."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from decider.db import UTCDateTime, now


class ModelSwitch(SQLModel, table=True):
    """One change of one role. `model_id` is what came in and `previous` what went out: for `live` and
    `candidate` a version ("" for no candidate); for `shadow` the versions added and removed, with the whole
    set after the change in `shadows`. `actor` is a person's name (a page), `cli:<user>` or `config`."""

    __tablename__ = "model_switch"

    id: int | None = Field(default=None, primary_key=True)
    role: str = Field(max_length=20)  # live | candidate | shadow
    model_id: str = Field(max_length=100)
    previous: str | None = Field(default=None, max_length=100)
    actor: str = Field(max_length=100)
    at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    canary_percent: float | None = None  # candidate rows: the share of cases it gets
    shadows: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # shadow rows
