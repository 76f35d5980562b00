"""The monitoring figures over HTTP: JSON at /api/v1/monitoring, the page at /monitoring (admins)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError

from decider.cases.api import ERRORS
from decider.cases.schemas import ErrorOut
from decider.deps import AdminTokenDep, RuntimeDep
from decider.errors import InvalidInput
from decider.fields import Text
from decider.monitoring.background import RETRY_SECONDS, Computing
from decider.monitoring.figures import Bucket
from decider.monitoring.queries import MAX_ROWS
from decider.monitoring.service import monitoring_figures, thresholds_of
from decider.web.pages import AdminDep, render

BUSY = {"model": ErrorOut, "description": "The figures are being computed (a first read of many cases, in the "
        "background); `Retry-After` says when to ask again"}
api_router = APIRouter(prefix="/api/v1/monitoring", tags=["monitoring"],
                       responses={**{k: v for k, v in ERRORS.items() if k in (401, 403, 422)}, 503: BUSY})
page_router = APIRouter(include_in_schema=False)

# An ISO 8601 date or time (UTC when no zone), and so the schema says: pydantic alone also takes seconds ("0.5").
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}(:?\d{2})?)?)?")
# A time without a zone, as the schema documents it: only dates and times that exist (years 0001-9999, days
# within their month, February to the 28th), so that every string the schema allows is one the server takes.
_DAY = r"(0[1-9]|1\d|2[0-8])"
_DATE = (rf"(?!0000)\d{{4}}-((0[1-9]|1[0-2])-{_DAY}|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)")
NAIVE_TIME = rf"^{_DATE}[Tt ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{{1,9}})?)?$"
TIME_SCHEMA = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"},
                         {"type": "string", "pattern": NAIVE_TIME}, {"type": "null"}]}


def iso_time(value: object) -> object:
    if isinstance(value, str) and not ISO_TIME.fullmatch(value):
        raise ValueError("expected an ISO 8601 date or time such as 2026-11-25 or 2026-11-25T08:00:00Z")
    return value


IsoTime = BeforeValidator(iso_time)
Since = Annotated[datetime | None, IsoTime, Query(
    json_schema_extra=TIME_SCHEMA, description="Cases created at or after this time (ISO 8601; UTC if no zone). "
    "Default: seven days ago (from the start of that hour), unless `last` is given.")]
Until = Annotated[datetime | None, IsoTime, Query(json_schema_extra=TIME_SCHEMA,
                                                  description="Cases created before this time. Default: now.")]
Last = Annotated[int | None, Query(ge=1, le=MAX_ROWS, description="Only the newest N cases of the window.")]
BucketQ = Annotated[Bucket | None, Query(description="Time series step. Default: fitted to the span from the "
                                         "window's first case, at most 60 buckets of 1, 2, 3, 4, 6, 8 or 12 hours, "
                                         "or 1, 2, 3, 7, 14 or 28 days.")]


@api_router.get("", response_model=dict[str, Any])
def monitoring_json(runtime: RuntimeDep, admin: AdminTokenDep, since: Since = None, until: Until = None,
                    last: Last = None, bucket: BucketQ = None) -> Any:
    """Drift, novel inputs, outputs, quality and the time series for a window of cases, with every flag raised.

    Drift compares the window's inputs with the live model's card. `novelty` counts the cases checked for
    inputs unlike the training data, those found novel (by kind, and the features most often out of range),
    and how many of them the model decided anyway. Each quality figure carries the count behind it (`n`) and
    is null where nothing could be counted. Thresholds come from the `[monitoring]` section of config.toml.
    Category inputs are under `drift.categories`: each category's live share against its training share,
    unseen categories as one more bin, and a chi-square test of the counts.

    The first request after a start, a promotion or for a much wider window may find the figures still being
    read from the cases (in the background): it answers 503 with `Retry-After`.
    """
    try:
        return monitoring_figures(engine=runtime.engine, card=runtime.deployment.live.card, since=since,
                                  until=until, last=last, bucket=bucket,
                                  thresholds=thresholds_of(runtime.settings.monitoring), background=True)
    except Computing as busy:
        return _busy(busy)


@page_router.get("/monitoring")
def monitoring_page(request: Request, runtime: RuntimeDep, user: AdminDep,
                    since: Annotated[Text, Query(max_length=40)] = "",
                    until: Annotated[Text, Query(max_length=40)] = "",
                    last: Annotated[Text, Query(max_length=7)] = "",
                    bucket: Annotated[Text, Query(max_length=5)] = "",
                    format: Literal["html", "json"] = "html") -> Response:
    """The figures as charts and tables (or, `format=json`, as the API gives them, for the logged-in admin).
    The form sends blank fields, so each one is parsed here."""
    form = {"since": since, "until": until, "last": last, "bucket": bucket}
    try:
        fig = monitoring_figures(engine=runtime.engine, card=runtime.deployment.live.card,
                                 since=_parse(_TIME, "since", since), until=_parse(_TIME, "until", until),
                                 last=_parse(_LAST, "last", last), bucket=_parse(_BUCKET, "bucket", bucket),
                                 thresholds=thresholds_of(runtime.settings.monitoring), background=True)
    except Computing as busy:
        if format == "json":
            return _busy(busy)
        return render(request, "monitoring.html", fig=None, form=form, computing=busy.build.as_dict(),
                      refresh=RETRY_SECONDS)
    if format == "json":
        return JSONResponse(jsonable_encoder(fig))
    return render(request, "monitoring.html", fig=fig, form=form)


def _busy(busy: Computing) -> JSONResponse:
    """503 while the figures are read in the background: since when, how far, and when to ask again."""
    return JSONResponse({"detail": str(busy), "field": None, "computing": busy.build.as_dict()}, 503,
                        headers={"Retry-After": str(RETRY_SECONDS)})


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
