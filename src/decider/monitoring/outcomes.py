"""Outcome feedback: the ground truth that arrives after the decision, recorded once per case."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import Connection, insert, update

from decider.cases.api import ERRORS
from decider.cases.schemas import CaseId, ErrorOut
from decider.cases.service import CASE, EVENT, client_case
from decider.db import now
from decider.deps import ClientDep, RuntimeDep
from decider.errors import Conflict, InvalidInput
from decider.fields import Text
from decider.monitoring.metrics import record_outcome

router = APIRouter(prefix="/api/v1/cases", tags=["cases"], responses=ERRORS | {
    409: {"model": ErrorOut, "description": "The case already has a different outcome"}})


class OutcomeIn(BaseModel):
    label: Annotated[Text, Field(min_length=1, max_length=100, description="The true class label")]


class OutcomeOut(BaseModel):
    case_id: int
    outcome: str
    outcome_at: datetime
    recorded: bool = Field(description="false when this same outcome had already been recorded")


def record(*, conn: Connection, case_id: int, label: str, labels: list[str], client: str) -> tuple[dict[str, Any],
                                                                                                  bool]:
    """Set the outcome of one of `client`'s cases if it has none; the same outcome again is a no-op, a
    different one a 409. Another client's case is a 404, so nobody can pre-empt the owner's report."""
    if label not in labels:
        raise InvalidInput(f"label: {label!r} is not one of {labels}", field="label")
    at = now()
    # Conditional: of two differing reports racing, exactly one is stored and the other gets the 409.
    result = conn.execute(update(CASE).where(CASE.c.id == case_id, CASE.c.client == client,
                                             CASE.c.outcome.is_(None)).values(outcome=label, outcome_at=at))
    case = client_case(conn=conn, case_id=case_id, client=client)  # 404 for an unknown case or another's
    if result.rowcount == 1:
        conn.execute(insert(EVENT).values(case_id=case_id, kind="outcome", actor=client, at=at,
                                          detail={"label": label}))
        return case, True
    if case["outcome"] != label:
        raise Conflict(f"case {case_id} already has the outcome {case['outcome']!r} "
                       f"(recorded {case['outcome_at']:%Y-%m-%d %H:%M:%S} UTC); a different one is refused")
    return case, False


@router.post("/{case_id}/outcome", response_model=OutcomeOut)
async def report_outcome(case_id: CaseId, body: OutcomeIn, runtime: RuntimeDep, client: ClientDep) -> dict:
    """Record the true label of a case, once. Sending the same label again is harmless.

    On the event loop like submitting: writes stay serialised in the process (see cases/api.py).
    """
    with runtime.engine.begin() as conn:
        case, created = record(conn=conn, case_id=case_id, label=body.label, client=client,
                               labels=runtime.deployment.live.labels)
    if created:
        record_outcome(case, body.label)
    return {"case_id": case_id, "outcome": case["outcome"], "outcome_at": case["outcome_at"], "recorded": created}
