"""`/api/v1/review`: the reviewer's actions for teams that build their own front end.

Same rules as the pages: a case is resolved only by the reviewer who holds its claim, and only once.
Each call authenticates with a person's own review token (`decider users token NAME`); the reviewer is
that person. A body cannot name another, and a client key gets 403.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from decider.cases.api import ERRORS
from decider.cases.schemas import CaseId, CaseOut, ErrorOut
from decider.cases.service import public
from decider.deps import ReviewerDep, RuntimeDep
from decider.fields import Text
from decider.review import service

router = APIRouter(prefix="/api/v1/review", tags=["review"], responses=ERRORS | {
    403: {"model": ErrorOut, "description": "Not a review token (a client key cannot act on the queue)"},
    409: {"model": ErrorOut, "description": "Already resolved or not yours"}})


class Body(BaseModel):
    # `reviewer` is refused by name: the reviewer is the token's owner, whatever a body says.
    model_config = ConfigDict(extra="forbid")


class ClaimIn(Body):
    sort: service.Sort = "age"


class ResolveIn(Body):
    label: Annotated[Text, Field(min_length=1, max_length=100)]
    note: Annotated[Text, Field(max_length=2000)] | None = None


class ReviewCaseOut(CaseOut):
    """A case as a reviewer sees it: the model's output is null where the level (or a blind audit) hides it."""

    features: dict[str, float | str | bool | None] = Field(description="Every field the client sent (null: missing)")
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
def claim_next(runtime: RuntimeDep, person: ReviewerDep, body: ClaimIn | None = None) -> dict | Response:
    """Claim the next queued case for you for the configured lease (the case you already hold, if any)."""
    with runtime.engine.begin() as conn:
        case = service.claim_next(conn=conn, reviewer=person.name, sort=body.sort if body else "age",
                                  lease_seconds=runtime.settings.review.lease_seconds)
    return Response(status_code=204) if case is None else _reviewer_view(case)


@router.get("/cases/{case_id}", response_model=ReviewCaseWithHistory)
def read(case_id: CaseId, runtime: RuntimeDep, person: ReviewerDep) -> dict:
    """A case as a reviewer sees it, with its history (created, scored, claimed, released, decided)."""
    with runtime.engine.connect() as conn:
        case = service.get_case(conn=conn, case_id=case_id)
        events = service.history(conn=conn, case=case)
    hidden = service.model_hidden(case)
    return _reviewer_view(case) | {"history": [service.event_view(e, hidden) for e in events]}


@router.post("/cases/{case_id}/claim", response_model=ReviewCaseOut)
def claim(case_id: CaseId, runtime: RuntimeDep, person: ReviewerDep, body: Body | None = None) -> dict:
    """Claim one named case (409 while another person holds it)."""
    with runtime.engine.begin() as conn:
        return _reviewer_view(service.claim(conn=conn, case_id=case_id, reviewer=person.name,
                                            lease_seconds=runtime.settings.review.lease_seconds))


@router.post("/cases/{case_id}/release", status_code=204)
def release(case_id: CaseId, runtime: RuntimeDep, person: ReviewerDep, body: Body | None = None) -> Response:
    """Give a case you hold back to the queue."""
    with runtime.engine.begin() as conn:
        service.release(conn=conn, case_id=case_id, reviewer=person.name)
    return Response(status_code=204)


class CorrectIn(Body):
    label: Annotated[Text, Field(min_length=1, max_length=100)]
    note: Annotated[Text, Field(min_length=1, max_length=2000, description="Why: kept in the case's history")]


@router.post("/cases/{case_id}/correct", response_model=ReviewCaseOut,
             responses={403: {"model": ErrorOut, "description": "A reviewer correcting someone else's decision"},
                        409: {"model": ErrorOut, "description": "Not decided yet, or already this label"}})
def correct(case_id: CaseId, body: CorrectIn, runtime: RuntimeDep, person: ReviewerDep) -> dict:
    """Correct a decided case, the model's decision or a person's (an admin: any; a reviewer: their own). The
    earlier decision stays in the history, the client gets `case.corrected`, and the quality figures use the
    corrected label."""
    with runtime.engine.begin() as conn:
        case = service.correct(conn=conn, case_id=case_id, person=person.name, admin=person.role == "admin",
                               label=body.label, labels=runtime.deployment.live.labels, note=body.note)
    return _reviewer_view(case)


@router.post("/cases/{case_id}/resolve", response_model=ReviewCaseOut)
def resolve(case_id: CaseId, body: ResolveIn, runtime: RuntimeDep, person: ReviewerDep) -> dict:
    """Decide a case you hold (or label an audited one). 409 if it is not yours or already resolved."""
    with runtime.engine.begin() as conn:
        case = service.resolve(conn=conn, case_id=case_id, reviewer=person.name, label=body.label,
                               labels=runtime.deployment.live.labels, note=body.note)
    return _reviewer_view(case)


def _reviewer_view(case: dict) -> dict:
    return public(service.reviewer_view(case))
