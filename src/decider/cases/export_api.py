"""`GET /api/v1/cases/export`: the labelled cases as CSV or JSON lines, streamed, for an admin.

Included before the cases router: `/api/v1/cases/{case_id}` would otherwise take `export` for a case id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from decider.cases import export
from decider.cases.api import ERRORS
from decider.deps import AdminTokenDep, RuntimeDep
from decider.monitoring.service import aware
from decider.monitoring.views import TIME_SCHEMA, IsoTime

router = APIRouter(prefix="/api/v1/cases", tags=["cases"],
                   responses={401: ERRORS[401], 403: {**ERRORS[403], "description": "Not an admin's review token"},
                              422: ERRORS[422]})
Since = Annotated[datetime | None, IsoTime, Query(
    json_schema_extra=TIME_SCHEMA, description="Cases created at or after this time (ISO 8601; UTC if no zone). "
    "Default: from the first case.")]
Until = Annotated[datetime | None, IsoTime, Query(json_schema_extra=TIME_SCHEMA,
                                                  description="Cases created before this time. Default: now.")]
FormatQ = Annotated[export.Format, Query(alias="format", description="`csv` (one column per contract field, "
                                         "`features.NAME`) or `jsonl` (one JSON object per line)")]
FILE = {"schema": {"type": "string"}}


@router.get("/export", response_class=StreamingResponse, responses={200: {
    "description": "Every labelled case, one per row or line, in id order",
    "content": {"text/csv": FILE, "application/x-ndjson": FILE}}})
def export_cases(runtime: RuntimeDep, admin: AdminTokenDep, since: Since = None, until: Until = None,
                 fmt: FormatQ = "csv") -> StreamingResponse:
    """Every labelled case created in [since, until): its features, the model's output, the route, the final
    label, who gave it and when, how it was sampled (`label_source`: queued, audit, outcome, correction),
    `audit_probability` and the training `weight` (1, or 1/p for an audit). Streamed a page at a time, so
    any number of cases takes the same memory. `decider train --from-cases FILE` trains on it."""
    since, until = aware(since), aware(until)
    chunks = export.stream(runtime.engine, fields=runtime.deployment.contract.names(), fmt=fmt, since=since,
                           until=until)
    return StreamingResponse(chunks, media_type=export.MEDIA_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="decider-cases.{fmt}"'})
