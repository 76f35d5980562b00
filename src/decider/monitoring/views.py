"""The monitoring figures over HTTP: JSON at /api/v1/monitoring, the page at /monitoring (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import Field, TypeAdapter, ValidationError

from decider.cases.api import ERRORS
from decider.deps import ClientDep, RuntimeDep
from decider.errors import InvalidInput
from decider.monitoring.figures import Bucket
from decider.monitoring.queries import MAX_ROWS
from decider.monitoring.service import monitoring_figures
from decider.web.pages import AdminDep, render

api_router = APIRouter(prefix="/api/v1/monitoring", tags=["monitoring"],
                       responses={k: v for k, v in ERRORS.items() if k in (401, 422)})
page_router = APIRouter(include_in_schema=False)

Since = Annotated[datetime | None, Query(description="Cases created at or after this time (ISO 8601; UTC if no "
                                                     "zone). Default: seven days ago, unless `last` is given.")]
Until = Annotated[datetime | None, Query(description="Cases created before this time. Default: now.")]
Last = Annotated[int | None, Query(ge=1, le=MAX_ROWS, description="Only the newest N cases of the window.")]
BucketQ = Annotated[Bucket | None, Query(description="Time series step; default hours up to two days, else days.")]


@api_router.get("")
def monitoring_json(runtime: RuntimeDep, client: ClientDep, since: Since = None, until: Until = None,
                    last: Last = None, bucket: BucketQ = None) -> dict[str, Any]:
    """Drift, outputs, quality and the time series for a window of cases, with every flag raised.

    Drift compares the window's inputs with the live model's card. Each quality figure carries the count
    behind it (`n`) and is null where nothing could be counted.
    """
    return monitoring_figures(engine=runtime.engine, card=runtime.deployment.live.card, since=since,
                              until=until, last=last, bucket=bucket)


@page_router.get("/monitoring")
def monitoring_page(request: Request, runtime: RuntimeDep, user: AdminDep,
                    since: Annotated[str, Query(max_length=40)] = "", until: Annotated[str, Query(max_length=40)] = "",
                    last: Annotated[str, Query(max_length=7)] = "",
                    bucket: Annotated[str, Query(max_length=5)] = "") -> HTMLResponse:
    """The figures as charts and tables. The form sends blank fields, so each one is parsed here."""
    form = {"since": since, "until": until, "last": last, "bucket": bucket}
    fig = monitoring_figures(engine=runtime.engine, card=runtime.deployment.live.card,
                             since=_parse(_TIME, "since", since), until=_parse(_TIME, "until", until),
                             last=_parse(_LAST, "last", last), bucket=_parse(_BUCKET, "bucket", bucket))
    return render(request, "monitoring.html", fig=fig, form=form)


_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)
_LAST: TypeAdapter[int] = TypeAdapter(Annotated[int, Field(ge=1, le=MAX_ROWS)])
_BUCKET: TypeAdapter[Bucket] = TypeAdapter(Bucket)


def _parse(adapter: TypeAdapter[Any], name: str, value: str) -> Any:
    if not value.strip():
        return None
    try:
        return adapter.validate_python(value.strip())
    except ValidationError as exc:
        raise InvalidInput(f"query.{name}: {exc.errors()[0]['msg']}", field=f"query.{name}") from None
