"""`/admin/models`: compare versions side by side before promoting or rolling back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from decider.db import as_utc
from decider.deps import RuntimeDep
from decider.registry.api import overview
from decider.registry.reliability import reliability_svg
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


def calibration_view(model_id: str, calibration: Any) -> dict[str, Any] | None:
    """A card's `calibration` as the Calibration section reads it, or None for a card trained before
    calibration was recorded. `before` and `after` are always mappings, so a hand-edited card shows dashes
    rather than breaking the page; `diagram` is the reliability diagram, drawn in Python (the pages run no
    script of their own for it, and the template should not build SVG)."""
    if not isinstance(calibration, dict):
        return None
    figures = {k: calibration[k] if isinstance(calibration.get(k), dict) else {} for k in ("before", "after")}
    return calibration | figures | {"diagram": reliability_svg(calibration.get("reliability"), name=model_id)}


@router.get("")
def models_page(request: Request, runtime: RuntimeDep, user: AdminDep) -> HTMLResponse:
    data = overview(runtime)
    data["versions"] = [v | {"created": utc_minutes(v.get("created_at")),
                             "calibration": calibration_view(v["id"], v.get("calibration"))}
                        for v in data["versions"]]
    return render(request, "admin_models.html", **data)
