"""`/submit`: a form for people to submit a case in the browser, and a page per case that follows it.

A case from the form takes the API's path exactly: the API's checks (web/submit_form.py), then
`Ingestor.submit`, so it is scored, routed, audited, canaried and shadowed as any API case. Its client is
`web:<name>` of the person logged in, never anything the form says. The model's output is shown only where
the case's level lets people see it (`cases.service.public`), as the API does.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from decider.auth.service import Person
from decider.cases import service
from decider.cases.schemas import CaseId
from decider.deps import IngestorDep, RuntimeDep
from decider.errors import Forbidden
from decider.monitoring.metrics import record_case
from decider.runtime import Runtime
from decider.web.pages import CsrfField, SubmitterDep, check_csrf, render, templates
from decider.web.submit_form import features_of, form_fields, problems_of, web_client

router = APIRouter(prefix="/submit", include_in_schema=False)
RECENT = 20  # the person's own submissions listed under the form
POLL_SECONDS = 2  # how often a waiting case's page asks whether it is decided yet
SUBMISSION = re.compile(r"^form-[A-Za-z0-9_-]{16,64}$")  # the form's own case key, drawn when it is drawn
TRY_REFUSED = "Try is off at this automation level: the model's output is kept from people (human_only, shadow)"


def model_hidden(runtime: Runtime) -> bool:
    """Whether the configured level keeps the model's output from people: then there is nothing to try."""
    return runtime.policy.level.value in service.HIDDEN_LEVELS


def _form(request: Request, runtime: Runtime, user: Person, status_code: int = 200,
          values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
          tried: dict[str, Any] | None = None, submission: str | None = None) -> HTMLResponse:
    dep = runtime.deployment
    fields = form_fields(dep.contract, dep.required, values, errors)
    shown = {f["input"] for f in fields}
    return render(request, "submit.html", status_code=status_code, fields=fields, errors=errors or {},
                  elsewhere={k: v for k, v in (errors or {}).items() if k not in shown}, tried=tried,
                  may_try=not model_hidden(runtime), recent=_recent(runtime, user),
                  contract_version=dep.contract.version,
                  submission=submission or "form-" + secrets.token_urlsafe(16))


def _recent(runtime: Runtime, user: Person) -> list[dict[str, Any]]:
    case = service.CASE
    query = (select(case.c.id, case.c.status, case.c.decision, case.c.decided_by, case.c.created_at)
             .where(case.c.client == web_client(user.name)).order_by(case.c.id.desc()).limit(RECENT))
    with runtime.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


@router.get("")
def form_page(request: Request, runtime: RuntimeDep, user: SubmitterDep) -> HTMLResponse:
    """The form: one input per field of the live model's contract, and the person's recent submissions."""
    return _form(request, runtime, user)


@router.post("")
async def submit(request: Request, runtime: RuntimeDep, ingestor: IngestorDep, user: SubmitterDep,
                 csrf: CsrfField = "", action: Annotated[Literal["submit", "try"], Form()] = "submit") -> Response:
    """Check the record as the API does; store it as the API does (or, for Try, only score it), then show it."""
    check_csrf(request, csrf)
    if action == "try" and model_hidden(runtime):
        raise Forbidden(TRY_REFUSED)
    dep = runtime.deployment  # one snapshot: the contract checked is the one the form was drawn from
    form = await request.form()
    features, raw = features_of(dep.contract, form.multi_items())  # type: ignore[arg-type]
    # The form's key makes a second press of Submit (or a resend of the same form) return the case the first
    # one stored instead of storing it twice; a form shown again after an error keeps its key.
    sent = str(form.get("submission", ""))
    key = sent if SUBMISSION.match(sent) else None
    problems = problems_of(dep.contract, dep.required, features)
    if problems:
        return _form(request, runtime, user, 422, values=raw, errors=problems, submission=key)
    sub = service.Submission(web_client(user.name), features, key)
    if action == "try":  # scored and routed as a submission would be, in memory: nothing is stored
        return _form(request, runtime, user, values=raw, submission=key,
                     tried=service.public(service.score_batch(runtime, [sub])[0]))
    row, created = await ingestor.submit(sub)
    if not created and row["features"] != features:  # the same form sent again with other values: a new case
        row, created = await ingestor.submit(service.Submission(web_client(user.name), features, None))
    if created:
        record_case(row)
    return RedirectResponse(f"/submit/cases/{row['id']}", 303)


def _case(runtime: Runtime, user: Person, case_id: int) -> dict[str, Any]:
    """The case as a client sees it: a submitter's own (another's is a 404, as on the API); an admin's any."""
    with runtime.engine.connect() as conn:
        if user.role == "admin":
            row = service.get_case(conn=conn, case_id=case_id)
        else:
            row = service.client_case(conn=conn, case_id=case_id, client=web_client(user.name))
    return service.public(row)


@router.get("/cases/{case_id}")
def case_page(request: Request, runtime: RuntimeDep, user: SubmitterDep, case_id: CaseId) -> HTMLResponse:
    """One submitted case: what was sent, and its result; while it waits, the page asks again every few seconds."""
    case = _case(runtime, user, case_id)
    response = render(request, "submitted.html", case=case, poll=POLL_SECONDS)
    response.headers["Cache-Control"] = "no-cache"
    return response


@router.get("/cases/{case_id}/status")
def case_status(request: Request, runtime: RuntimeDep, user: SubmitterDep, case_id: CaseId) -> HTMLResponse:
    """The status part of the case page alone, for the page's poll (htmx swaps it in)."""
    response = templates.TemplateResponse(request, "_submit_status.html",
                                          {"case": _case(runtime, user, case_id), "poll": POLL_SECONDS})
    response.headers["Cache-Control"] = "no-cache"
    return response
