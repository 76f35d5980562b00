"""`/api/v1/review`: the reviewer's actions for teams that build their own front end.

Same rules as the pages: a case is resolved only by the reviewer who holds its claim, and only once.
Each call authenticates with a person's own review token (`decider users token NAME`); the reviewer is
that person. A body cannot name another, and a client key gets 403.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from decider.cases.api import ERRORS
from decider.cases.schemas import CaseId, CaseOut, ErrorOut
from decider.cases.service import public
from decider.deps import ReviewerDep, RuntimeDep
from decider.fields import Text
from decider.review import insight, service
from decider.runtime import Runtime

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


class ShareOut(BaseModel):
    name: str
    value: float | str | bool | None = Field(
        description="The value the model scored (a category's or boolean's as sent; null: missing, imputed)")
    contribution: float = Field(description="Its share of the margin, in `unit`: > 0 towards `suggested`, "
                                "< 0 towards `runner_up`")
    percentile: float | None = Field(description="Share of training values at or below this one, 0-100")
    outside: bool = Field(description="Outside the training range")
    training_mean: float | None
    training_std: float | None
    training_min: float | None
    training_max: float | None


class ExplanationOut(BaseModel):
    """Why the model suggests `suggested` over `runner_up`: `base` + the sum of the contributions = `margin`."""

    model_version: str
    suggested: str
    runner_up: str
    method: Literal["linear", "shapley"] = Field(
        description="`linear`: exact shares of a linear model's log-odds margin; `shapley`: interventional "
        "Shapley values of the probability margin, estimated from `chains` permutation chains")
    unit: str
    base: float = Field(description="The margin averaged over background rows drawn from the training data")
    margin: float = Field(description="The margin at this case")
    exact: bool
    chains: int
    features: list[ShareOut] = Field(description="Every feature the model uses, largest share first")


class PrecedentOut(BaseModel):
    id: int
    decision: str = Field(description="The final decision")
    decided_by: str = Field(description="The person who decided it")
    decided_at: datetime | None
    distance: float = Field(description="Euclidean, in the live model's features scaled by their training spread")


class ReviewCaseOut(CaseOut):
    """A case as a reviewer sees it: the model's output is null where the level (or a blind audit) hides it."""

    features: dict[str, float | str | bool | None] = Field(description="Every field the client sent (null: missing)")
    audit: bool = Field(description="A blind audit of an automatic decision: the label checks the model")
    review_status: str | None = Field(description="`pending` (waiting for a reviewer) or `done`")
    claimed_by: str | None
    claim_expires_at: datetime | None
    explanation: ExplanationOut | None = Field(
        default=None, description="Why the model suggests its class; null where the model's output is hidden")
    precedents: list[PrecedentOut] | None = Field(
        default=None, description=f"The {insight.PRECEDENTS} most similar cases decided by a person, nearest "
        "first; null where the model's output is hidden (a list of labelled look-alikes is a suggestion too)")


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
    return Response(status_code=204) if case is None else _reviewer_view(runtime, case)


@router.get("/cases/{case_id}", response_model=ReviewCaseWithHistory)
def read(case_id: CaseId, runtime: RuntimeDep, person: ReviewerDep) -> dict:
    """A case as a reviewer sees it, with its history (created, scored, claimed, released, decided)."""
    with runtime.engine.connect() as conn:
        case = service.get_case(conn=conn, case_id=case_id)
        events = service.history(conn=conn, case=case)
    hidden = service.model_hidden(case)
    return _reviewer_view(runtime, case) | {"history": [service.event_view(e, hidden) for e in events]}


@router.post("/cases/{case_id}/claim", response_model=ReviewCaseOut)
def claim(case_id: CaseId, runtime: RuntimeDep, person: ReviewerDep, body: Body | None = None) -> dict:
    """Claim one named case (409 while another person holds it)."""
    with runtime.engine.begin() as conn:
        case = service.claim(conn=conn, case_id=case_id, reviewer=person.name,
                             lease_seconds=runtime.settings.review.lease_seconds)
    return _reviewer_view(runtime, case)


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
    return _reviewer_view(runtime, case)


@router.post("/cases/{case_id}/resolve", response_model=ReviewCaseOut)
def resolve(case_id: CaseId, body: ResolveIn, runtime: RuntimeDep, person: ReviewerDep) -> dict:
    """Decide a case you hold (or label an audited one). 409 if it is not yours or already resolved."""
    with runtime.engine.begin() as conn:
        case = service.resolve(conn=conn, case_id=case_id, reviewer=person.name, label=body.label,
                               labels=runtime.deployment.live.labels, note=body.note)
    return _reviewer_view(runtime, case)


def _reviewer_view(runtime: Runtime, case: dict) -> dict:
    """The case as the reviewer may see it, with the explanation and precedents where the model's view shows."""
    return public(service.reviewer_view(case)) | {"explanation": insight.explanation(runtime, case),
                                                   "precedents": insight.precedents(runtime, case)}
