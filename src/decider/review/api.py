"""`/api/v1/review`: the reviewer's actions for teams that build their own front end.

Same rules as the pages: a case is resolved only by the reviewer who holds its claim, and only once.
The client system authenticates with its API key and names the person acting in `reviewer`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from decider.cases.api import ERRORS
from decider.cases.schemas import CaseId, CaseOut, ErrorOut
from decider.cases.service import public
from decider.deps import ClientDep, RuntimeDep
from decider.review import service

router = APIRouter(prefix="/api/v1/review", tags=["review"],
                   responses=ERRORS | {409: {"model": ErrorOut, "description": "Already resolved or not yours"}})
Name = Annotated[str, Field(min_length=1, max_length=100)]


class Reviewer(BaseModel):
    reviewer: Name


class ClaimIn(Reviewer):
    sort: service.Sort = "age"


class ResolveIn(Reviewer):
    label: Name
    note: Annotated[str, Field(max_length=2000)] | None = None


class ReviewCaseOut(CaseOut):
    """A case as a reviewer sees it: the model's output is null where the level (or a blind audit) hides it."""

    features: dict[str, float]
    audit: bool = Field(description="A blind audit of an automatic decision: the label checks the model")
    review_status: str | None = Field(description="`pending` (waiting for a reviewer) or `done`")
    claimed_by: str | None
    claim_expires_at: datetime | None


class EventOut(BaseModel):
    kind: str = Field(description="created, scored, claimed, released, decided, audited")
    actor: str
    at: datetime
    detail: dict[str, Any] | None


class ReviewCaseWithHistory(ReviewCaseOut):
    history: list[EventOut]


@router.post("/claim", response_model=ReviewCaseOut, responses={204: {"description": "Nothing is waiting"}})
def claim_next(body: ClaimIn, runtime: RuntimeDep, client: ClientDep) -> dict | Response:
    """Claim the next queued case for `reviewer` for the configured lease."""
    with runtime.engine.begin() as conn:
        case = service.claim_next(conn=conn, reviewer=body.reviewer, sort=body.sort,
                                  lease_seconds=runtime.settings.review.lease_seconds)
    return Response(status_code=204) if case is None else _reviewer_view(case)


@router.get("/cases/{case_id}", response_model=ReviewCaseWithHistory)
def read(case_id: CaseId, runtime: RuntimeDep, client: ClientDep) -> dict:
    """A case as a reviewer sees it, with its history (created, scored, claimed, released, decided)."""
    with runtime.engine.connect() as conn:
        case = service.get_case(conn=conn, case_id=case_id)
        events = service.history(conn=conn, case=case)
    hidden = service.model_hidden(case)
    return _reviewer_view(case) | {"history": [service.event_view(e, hidden) for e in events]}


@router.post("/cases/{case_id}/claim", response_model=ReviewCaseOut)
def claim(case_id: CaseId, body: Reviewer, runtime: RuntimeDep, client: ClientDep) -> dict:
    """Claim one named case."""
    with runtime.engine.begin() as conn:
        return _reviewer_view(service.claim(conn=conn, case_id=case_id, reviewer=body.reviewer,
                                            lease_seconds=runtime.settings.review.lease_seconds))


@router.post("/cases/{case_id}/release", status_code=204)
def release(case_id: CaseId, body: Reviewer, runtime: RuntimeDep, client: ClientDep) -> Response:
    """Give a claimed case back to the queue."""
    with runtime.engine.begin() as conn:
        service.release(conn=conn, case_id=case_id, reviewer=body.reviewer)
    return Response(status_code=204)


@router.post("/cases/{case_id}/resolve", response_model=ReviewCaseOut)
def resolve(case_id: CaseId, body: ResolveIn, runtime: RuntimeDep, client: ClientDep) -> dict:
    """Decide a claimed case (or label an audited one). 409 if it is not yours or already resolved."""
    with runtime.engine.begin() as conn:
        case = service.resolve(conn=conn, case_id=case_id, reviewer=body.reviewer, label=body.label,
                               labels=runtime.deployment.live.labels, note=body.note)
    return _reviewer_view(case)


def _reviewer_view(case: dict) -> dict:
    return public(service.reviewer_view(case))
