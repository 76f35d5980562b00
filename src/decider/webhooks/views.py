"""`/admin/webhooks`: the endpoints per client and their deliveries, managed by admins in the browser with the
same functions as `decider webhooks` (webhooks/service.py). A new endpoint's secret is shown once, on the
answer to the form that made it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from decider.deps import RuntimeDep
from decider.errors import DeciderError
from decider.fields import Text
from decider.runtime import Runtime
from decider.web.pages import AdminDep, CsrfField, check_csrf, flash, render
from decider.webhooks import service
from decider.webhooks.outbox import DELIVERY, ENDPOINT, EVENT_TYPES

router = APIRouter(prefix="/admin/webhooks", include_in_schema=False)
RECENT_FAILURES = 50


def _page(request: Request, runtime: Runtime, status_code: int = 200, **extra: Any) -> HTMLResponse:
    with runtime.engine.connect() as conn:
        endpoints = service.endpoints(conn)
        failed = [dict(r) for r in conn.execute(
            select(DELIVERY.c.id, DELIVERY.c.msg_id, DELIVERY.c.case_id, DELIVERY.c.event_type, DELIVERY.c.attempts,
                   DELIVERY.c.last_error, DELIVERY.c.created_at, ENDPOINT.c.url)
            .join(ENDPOINT, ENDPOINT.c.id == DELIVERY.c.endpoint_id).where(DELIVERY.c.status == "failed")
            .order_by(DELIVERY.c.id.desc()).limit(RECENT_FAILURES)).mappings()]
    return render(request, "admin_webhooks.html", status_code=status_code, endpoints=endpoints, failed=failed,
                  event_types=EVENT_TYPES, **extra)


@router.get("")
def webhooks_page(request: Request, runtime: RuntimeDep, user: AdminDep) -> HTMLResponse:
    return _page(request, runtime)


@router.post("/add")
def add(request: Request, runtime: RuntimeDep, user: AdminDep, client: Annotated[Text, Form(max_length=100)],
        url: Annotated[Text, Form(max_length=2000)], csrf: CsrfField = "") -> Response:
    check_csrf(request, csrf)
    try:
        with runtime.engine.begin() as conn:
            endpoint_id, secret = service.add_endpoint(conn, client=client.strip(), url=url.strip(), events=["*"],
                                                       actor=user.name, settings=runtime.settings.webhooks)
    except DeciderError as exc:
        return _page(request, runtime, exc.status_code, error=exc.message)
    response = _page(request, runtime, new_secret={"id": endpoint_id, "secret": secret})
    response.headers["Cache-Control"] = "no-store"  # the secret is on this answer only
    return response


@router.post("/{endpoint_id}/{action}")
def act(request: Request, runtime: RuntimeDep, user: AdminDep, endpoint_id: int, action: str,
        csrf: CsrfField = "") -> Response:
    """disable, enable, rotate (the new secret shown once), or replay (its failed deliveries)."""
    check_csrf(request, csrf)
    secret = None
    try:
        with runtime.engine.begin() as conn:
            if action in ("disable", "enable"):
                service.set_enabled(conn, endpoint_id, action == "enable")
            elif action == "rotate":
                secret = service.rotate_secret(conn, endpoint_id)
            elif action == "replay":
                service.endpoint(conn, endpoint_id)
                n = service.replay(conn, actor=user.name, endpoint_id=endpoint_id, failed=True)
            else:
                return _page(request, runtime, 404, error=f"no action {action!r}")
    except DeciderError as exc:
        return _page(request, runtime, exc.status_code, error=exc.message)
    if secret:
        response = _page(request, runtime, new_secret={"id": endpoint_id, "secret": secret})
        response.headers["Cache-Control"] = "no-store"
        return response
    flash(request, f"endpoint {endpoint_id}: " + (f"{n} failed deliveries queued again" if action == "replay"
                                                   else f"{action}d"))
    return RedirectResponse("/admin/webhooks", 303)
