"""`/api/v1/cases`: submit a case, read it back, list cases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from decider.cases import service
from decider.cases.schemas import CaseId, CaseIn, CaseOut, CasePage, ErrorOut
from decider.deps import ClientDep, IngestorDep, RuntimeDep
from decider.errors import Conflict
from decider.monitoring.metrics import record_case

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid API key"},
    403: {"model": ErrorOut, "description": "A credential of the wrong kind for this endpoint"},
    404: {"model": ErrorOut, "description": "No such case (or not one of yours)"},
    413: {"model": ErrorOut, "description": "Body over the size limit"},
    422: {"model": ErrorOut, "description": "Invalid input; `field` names what was wrong"},
}
router = APIRouter(prefix="/api/v1/cases", tags=["cases"], responses=ERRORS)


@router.post("", status_code=201, response_model=CaseOut,
             responses={200: {"model": CaseOut, "description": "A case with this key and these features existed"},
                        409: {"model": ErrorOut, "description": "A case with this key has other features"}})
async def submit_case(body: CaseIn, runtime: RuntimeDep, client: ClientDep, ingestor: IngestorDep,
                      response: Response) -> dict:
    """Score a case and route it: decided by the model, or queued for a person.

    The answer comes after the case is committed; concurrent submissions share one transaction
    (see cases/ingest.py).
    """
    deployment = runtime.deployment
    deployment.contract.check(body.features, deployment.required)
    row, created = await ingestor.submit(service.Submission(client, body.features, body.key))
    if created:
        record_case(row)
    elif row["features"] != dict(body.features):
        raise Conflict(f"key: case {row['id']} already has key {row['key']!r} with other features", field="key")
    else:
        response.status_code = 200
    return service.public(row)


@router.get("/{case_id}", response_model=CaseOut)
def read_case(case_id: CaseId, runtime: RuntimeDep, client: ClientDep) -> dict:
    """One of your cases as it stands now, with a person's decision once it is resolved."""
    with runtime.engine.connect() as conn:
        return service.public(service.client_case(conn=conn, case_id=case_id, client=client))


@router.get("", response_model=CasePage)
def list_cases(
    runtime: RuntimeDep,
    client: ClientDep,
    status: Annotated[str | None, Query(pattern="^(pending|decided)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=r"^\d{1,18}$", description="`next_cursor` of the previous page")
    ] = None,
) -> dict:
    """Your cases oldest first, a page at a time."""
    with runtime.engine.connect() as conn:
        rows = service.list_cases(conn=conn, client=client, status=status, after=int(cursor) if cursor else None,
                                  limit=limit)
    next_cursor = str(rows[-1]["id"]) if len(rows) == limit else None
    return {"items": [service.public(r) for r in rows], "next_cursor": next_cursor}


