"""`GET /api/v1/cases/{case_id}/deliveries`: the webhook deliveries of one of your cases."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from decider.cases import service
from decider.cases.api import ERRORS
from decider.cases.schemas import CaseId
from decider.deps import ClientDep, RuntimeDep
from decider.webhooks.service import deliveries

router = APIRouter(prefix="/api/v1/cases", tags=["cases"], responses=ERRORS)


class DeliveryOut(BaseModel):
    msg_id: str = Field(description="The event's `webhook-id`, the same on every attempt")
    event_type: str
    url: str = Field(description="The endpoint it goes to")
    status: str = Field(description="`pending` (on its way or waiting to retry), `delivered` or `failed`")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None


@router.get("/{case_id}/deliveries", response_model=list[DeliveryOut])
def case_deliveries(case_id: CaseId, runtime: RuntimeDep, client: ClientDep) -> list[dict]:
    """Every webhook event about one of your cases and how its delivery stands."""
    with runtime.engine.connect() as conn:
        service.client_case(conn=conn, case_id=case_id, client=client)  # 404 unless it is yours
        return deliveries(conn, case_id)
