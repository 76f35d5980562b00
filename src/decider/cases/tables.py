"""The case record and its history. A case holds everything needed to explain its decision later."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from decider.db import BigId, UTCDateTime, now

REVIEWED = text("review_status IS NOT NULL")


def review_index(name: str, *columns: str) -> Index:
    """An index over the cases with a review only. Most cases are decided automatically and never reviewed,
    and every index entry is paid for by each insert; every query on these indexes compares review_status
    with a value, which implies the predicate on SQLite and PostgreSQL alike, so their planners still use it."""
    return Index(name, *columns, sqlite_where=REVIEWED, postgresql_where=REVIEWED)


class Case(SQLModel, table=True):
    __tablename__ = "case"
    __table_args__ = (
        UniqueConstraint("client", "key", name="uq_case_client_key"),
        # The review queue: pending reviews in order of age or of confidence (keyset pagination).
        review_index("ix_case_queue_age", "review_status", "id"),
        # Least confident first, among the cases whose suggestion reviewers may see (review.service.RANKED).
        review_index("ix_case_queue_ranked", "review_status", "show_suggestion", "audit", "confidence", "id"),
        # Live claims: "claimed now", and the claim a reviewer already holds.
        review_index("ix_case_queue_claims", "review_status", "claim_expires_at"),
        review_index("ix_case_queue_due", "review_status", "due_at"),
        Index("ix_case_status_id", "status", "id"),
        Index("ix_case_created_at", "created_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    key: str = Field(max_length=200)  # the client's own id for the case; hashed for rollout and canary
    client: str = Field(max_length=100)  # the API key's name
    features: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # every field the client sent
    contract_version: str | None = Field(default=None, max_length=20)  # the input contract it was checked by
    # Why the input is unlike the scoring model's training data (novelty.Reason dicts); [] when it is not,
    # None when no model checked it.
    novelty: list[Any] | None = Field(default=None, sa_column=Column(JSON))
    model_version: str | None = Field(default=None, max_length=100)
    model_role: str | None = Field(default=None, max_length=20)  # live | candidate
    probabilities: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    prediction: str | None = Field(default=None, max_length=100)
    confidence: float | None = None
    level: str = Field(max_length=20)  # the configured automation level
    effective_level: str = Field(max_length=20)  # after the rollout share
    threshold: float | None = None
    policy_version: str = Field(max_length=20)
    route: str = Field(max_length=10)  # auto | queue
    show_suggestion: bool = False
    status: str = Field(max_length=10)  # pending | decided
    decision: str | None = Field(default=None, max_length=100)
    decided_by: str | None = Field(default=None, max_length=100)  # "model" or a reviewer's name
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    audit: bool = False  # an automatic decision also sent to a blind review
    # The chance it had of being audited when routed (None on cases stored before it was kept): the weight
    # that keeps the sampling-corrected figures unbiased when audits are spent by need.
    audit_probability: float | None = None
    review_status: str | None = Field(default=None, max_length=10)  # pending | done; None: no review
    review_label: str | None = Field(default=None, max_length=100)
    reviewed_by: str | None = Field(default=None, max_length=100)
    reviewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    review_note: str | None = Field(default=None, max_length=2000)
    claimed_by: str | None = Field(default=None, max_length=100)
    claim_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A queued case's deadline (review/deadlines.py), and when it passed it unresolved.
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    overdue_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=100)
    outcome_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)


class CaseEvent(SQLModel, table=True):
    """One step in a case's life: created, scored, claimed, released, decided, audited, outcome."""

    __tablename__ = "case_event"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    case_id: int = Field(sa_column=Column(BigId, ForeignKey("case.id"), nullable=False, index=True))
    kind: str = Field(max_length=20)
    actor: str = Field(max_length=100)
    at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class ShadowPrediction(SQLModel, table=True):
    """A prediction by a model that decides nothing: kept to compare with the live model and people."""

    __tablename__ = "shadow_prediction"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    case_id: int = Field(sa_column=Column(BigId, ForeignKey("case.id"), nullable=False, index=True))
    model_version: str = Field(max_length=100, index=True)
    prediction: str | None = Field(default=None, max_length=100)
    confidence: float | None = None
    probabilities: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    error: str | None = Field(default=None, max_length=500)
    latency_ms: float | None = None
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
