"""`/admin/models`: compare versions side by side, then change the deployment (promote, roll back, set the
candidate and its share, add or remove shadows) through a confirmation that shows what will change.

The checks and the record are `registry/deploy.py`'s, the same as `decider models ...`: a page change is
recorded under the admin's name, and `seen` (the newest history row the confirmation was made against)
refuses a change whose ground moved between the confirmation and the click.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from decider.db import as_utc
from decider.deps import RuntimeDep
from decider.errors import DeciderError
from decider.fields import Text
from decider.registry import deploy
from decider.registry.api import overview
from decider.registry.reliability import reliability_svg
from decider.runtime import Runtime
from decider.web.pages import AdminDep, CsrfField, check_csrf, flash, render

router = APIRouter(prefix="/admin/models", include_in_schema=False)
Action = Annotated[Literal["promote", "rollback", "candidate", "shadow-add", "shadow-remove"], Form()]
Target = Annotated[Text, Form(max_length=100)]
Percent = Annotated[float, Form(ge=0, le=100, allow_inf_nan=False)]


def utc_minutes(iso: str | None) -> str | None:
    """A card's `created_at` (ISO 8601) as `2026-11-25 22:37 UTC`, like the other times on the pages;
    a value that does not parse is shown as it is."""
    if not iso:
        return None
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{as_utc(at):%Y-%m-%d %H:%M} UTC"


def calibration_view(model_id: str, calibration: Any) -> dict[str, Any] | None:
    """A card's `calibration` as the Calibration section reads it, or None for a card trained before
    calibration was recorded. `before` and `after` are always mappings, so a hand-edited card shows dashes
    rather than breaking the page; `diagram` is the reliability diagram, drawn in Python (the pages run no
    script of their own for it, and the template should not build SVG)."""
    if not isinstance(calibration, dict):
        return None
    figures = {k: calibration[k] if isinstance(calibration.get(k), dict) else {} for k in ("before", "after")}
    return calibration | figures | {"diagram": reliability_svg(calibration.get("reliability"), name=model_id)}


def _page(request: Request, runtime: Runtime, status_code: int = 200, **extra: Any) -> HTMLResponse:
    data = overview(runtime)
    data["versions"] = [v | {"created": utc_minutes(v.get("created_at")),
                             "calibration": calibration_view(v["id"], v.get("calibration"))}
                        for v in data["versions"]]
    data["history"] = [s | {"change": deploy.describe(s)} for s in data["history"]]
    with runtime.engine.connect() as conn:
        previous = deploy.state(conn, runtime.settings).previous
    return render(request, "admin_models.html", status_code=status_code, **data, previous=previous,
                  config_problem=runtime.problems.get("config"), **extra)


@router.get("")
def models_page(request: Request, runtime: RuntimeDep, user: AdminDep) -> HTMLResponse:
    return _page(request, runtime)


@router.post("/confirm")
def confirm(request: Request, runtime: RuntimeDep, user: AdminDep, action: Action, target: Target = "",
            canary_percent: Percent = 0.0, csrf: CsrfField = "") -> Response:
    """Check the change as `apply` will, and show the deployment now and after it; nothing is written."""
    check_csrf(request, csrf)
    change = deploy.Change(action, target, canary_percent)
    try:
        with runtime.engine.connect() as conn:
            current, after = deploy.plan(conn, runtime.settings, change)
            seen = deploy.latest_switch_id(conn)
    except deploy.NothingToDo as exc:
        flash(request, f"Nothing to do: {exc.message}.", "warn")
        return RedirectResponse("/admin/models", 303)
    except DeciderError as exc:
        return _page(request, runtime, exc.status_code, error=exc.message)
    rows = [(label, getattr(current.roles, key), getattr(after, key)) for label, key in
            (("Live", "live"), ("Candidate", "candidate"), ("Canary share", "canary_percent"),
             ("Shadows", "shadows"))]
    return render(request, "admin_models_confirm.html", change=change, rows=rows, seen=seen,
                  before=current.roles, after=after, reload_seconds=runtime.settings.server.reload_seconds)


@router.post("/apply")
def apply(request: Request, runtime: RuntimeDep, user: AdminDep, action: Action, target: Target = "",
          canary_percent: Percent = 0.0, seen: Annotated[int, Form(ge=0, le=2**62)] = 0,
          csrf: CsrfField = "") -> Response:
    """Record the confirmed change under the admin's name; this process follows it at once, the others
    within `server.reload_seconds`."""
    check_csrf(request, csrf)
    try:
        before, after = deploy.apply(runtime.engine, runtime.settings,
                                     deploy.Change(action, target, canary_percent), actor=user.name, seen=seen)
    except deploy.NothingToDo as exc:
        flash(request, f"Nothing to do: {exc.message}.", "warn")
        return RedirectResponse("/admin/models", 303)
    except DeciderError as exc:
        return _page(request, runtime, exc.status_code, error=exc.message)
    deploy.poll(runtime)
    flash(request, f"Done: {summary(before, after)}. Other server processes follow within "
                   f"{runtime.settings.server.reload_seconds:g} s.")
    return RedirectResponse("/admin/models", 303)


def summary(before: deploy.Roles, after: deploy.Roles) -> str:
    """What changed, in words: `live iris-v1 → iris-v2`."""
    def candidate(r: deploy.Roles) -> str:
        return f"{r.candidate} at {r.canary_percent:g}%" if r.candidate else "none"

    parts = []
    if before.live != after.live:
        parts.append(f"live {before.live} → {after.live}")
    if candidate(before) != candidate(after):
        parts.append(f"candidate {candidate(before)} → {candidate(after)}")
    if before.shadows != after.shadows:
        parts.append(f"shadows {', '.join(before.shadows) or 'none'} → {', '.join(after.shadows) or 'none'}")
    return "; ".join(parts)
