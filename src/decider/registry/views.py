"""`/admin/models`: compare versions side by side before promoting or rolling back."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from decider.deps import RuntimeDep
from decider.registry.api import overview
from decider.web.pages import AdminDep, render

router = APIRouter(prefix="/admin/models", include_in_schema=False)


@router.get("")
def models_page(request: Request, runtime: RuntimeDep, user: AdminDep) -> HTMLResponse:
    return render(request, "admin_models.html", **overview(runtime))
