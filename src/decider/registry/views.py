"""`/admin/models`: compare versions side by side before promoting or rolling back."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from decider.db import as_utc
from decider.deps import RuntimeDep
from decider.registry.api import overview
from decider.web.pages import AdminDep, render

router = APIRouter(prefix="/admin/models", include_in_schema=False)


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


@router.get("")
def models_page(request: Request, runtime: RuntimeDep, user: AdminDep) -> HTMLResponse:
    data = overview(runtime)
    data["versions"] = [v | {"created": utc_minutes(v.get("created_at"))} for v in data["versions"]]
    return render(request, "admin_models.html", **data)
