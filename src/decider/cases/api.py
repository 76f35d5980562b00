"""`/api/v1/cases`: submit a case, read it back, list cases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response

from decider.auth.service import client_for_key
from decider.cases import service
from decider.cases.batch import case_out, submit_batch
from decider.cases.schemas import BatchIn, BatchOut, CaseId, CaseIn, CaseOut, CasePage, ErrorOut
from decider.deps import ClientDep, IngestorDep, RuntimeDep, key_of
from decider.errors import Conflict
from decider.http import DirectRoute, json_body, parse_body
from decider.monitoring.metrics import record_case

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid API key"},
    403: {"model": ErrorOut, "description": "A credential of the wrong kind for this endpoint"},
    404: {"model": ErrorOut, "description": "No such case (or not one of yours)"},
    413: {"model": ErrorOut, "description": "Body over the size limit"},
    422: {"model": ErrorOut, "description": "Invalid input; `field` names what was wrong"},
}
router = APIRouter(prefix="/api/v1/cases", tags=["cases"], responses=ERRORS)
batch_router = APIRouter(prefix="/api/v1/batches", tags=["cases"], responses=ERRORS)
# The batch endpoint reads its body itself and checks each case on its own, answering a bad one in its result,
# so the schema leaves each item open: one that is not a valid CaseIn is not a refused request.
BATCH_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["cases"], "properties": {"cases": {
    "type": "array", "description": BatchIn.model_fields["cases"].description,
    "items": {"description": "A case as the body of `POST /api/v1/cases` (CaseIn: `features`, "
              "optional `key`); checked on its own, a bad one answered in its result"}}}}


# The hot path reads its own body and key (see submit_case), so its body and credential are declared here
# for /docs; app.py's openapi() puts CaseIn in the components, with the live contract's features.
CASE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/CaseIn"}}}}, "security": [{"ClientKey": []}]}


async def submit_case(request: Request) -> Response:
    """Score a case and route it: decided by the model, or queued for a person.

    The answer comes after the case is committed; concurrent submissions share one transaction
    (see cases/ingest.py).
    """
    # The busiest endpoint takes no FastAPI parameters (a DirectRoute, below): solving its dependencies,
    # parsing the body with json.loads, validating the dict and then the response again cost ~40% of the
    # request (measured at 0.87 against 0.58 ms of CPU per case). The checks are the same: the key as
    # get_client checks it, the body by CaseIn with FastAPI's errors (http.parse_body), the response in
    # CaseOut's shape (batch.case_out).
    runtime = request.app.state.runtime
    client = client_for_key(engine=runtime.engine, key=key_of(request.headers.get("authorization")))
    body = await parse_body(request, CaseIn)
    deployment = runtime.deployment
    deployment.contract.check(body.features, deployment.required)
    row, created = await request.app.state.ingestor.submit(service.Submission(client, body.features, body.key))
    if created:
        record_case(row)
    elif row["features"] != dict(body.features):
        raise Conflict(f"key: case {row['id']} already has key {row['key']!r} with other features", field="key")
    return Response(json_body(case_out(row)), 201 if created else 200,
                    media_type="application/json")


SUBMIT_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": CaseOut, "description": "A case with this key and these features existed"},
    409: {"model": ErrorOut, "description": "A case with this key has other features"}}


def add_submit_route(app: FastAPI) -> None:
    """`POST /api/v1/cases` on the app's own router, ahead of the included ones (app.py): FastAPI matches a
    route of an included router twice, through three layers: ~10% of this endpoint's CPU (bench/ingest.py)."""
    app.router.add_api_route(router.prefix, submit_case, methods=["POST"], status_code=201, response_model=CaseOut,
                             tags=list(router.tags), openapi_extra=CASE_BODY, route_class_override=DirectRoute,
                             responses={**ERRORS, **SUBMIT_ANSWERS})


@batch_router.post("", response_model=BatchOut,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": BATCH_SCHEMA}}}},
             responses={200: {"description": "One result per case, in order: each stored (201, 200) or refused "
                                             "(409, 422) on its own"},
                        413: {"model": ErrorOut, "description": "More cases than `server.batch_max_cases` "
                              "(`field`: `cases`), or a body over `server.batch_max_body_bytes` (`field`: `body`)"},
                        422: {"model": ErrorOut, "description": 'The body is not JSON, or not {"cases": [...]}'}})
async def submit_cases(request: Request, runtime: RuntimeDep, client: ClientDep,
                       ingestor: IngestorDep) -> Response:
    """Score and route many cases in one request (a nightly file, a backlog), each as `POST /api/v1/cases`
    would: one bad case gets its own error and the others are stored; a key sent before returns its case.

    The answer comes after every stored case is committed, in one transaction; `decider submit --csv FILE`
    streams a file through this endpoint.
    """
    result = await submit_batch(raw=await request.body(), content_type=request.headers.get("content-type", ""),
                                runtime=runtime, ingestor=ingestor, client=client)
    # Already in CaseOut's shape (batch.case_out, checked by the tests): validating 1,000 CaseOut again for
    # response_model would cost ~60 ms a batch, 4x the rest of the request's own work.
    return Response(json_body(result), media_type="application/json")


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


