"""The policy in force and its history: `GET /api/v1/policy` for systems, `/admin/policy` for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from decider.automation import evidence, history, pilot, riskchart
from decider.cases.api import ERRORS
from decider.deps import AdminTokenDep, RuntimeDep
from decider.monitoring.service import aware
from decider.monitoring.views import Since
from decider.runtime import Runtime
from decider.web.pages import AdminDep, render

api_router = APIRouter(prefix="/api/v1/policy", tags=["policy"], responses={401: ERRORS[401], 403: ERRORS[403]})
page_router = APIRouter(include_in_schema=False)


class PolicyChangeOut(BaseModel):
    version: str = Field(description="Short hash of the content: the same policy always has the same version")
    content: dict[str, Any]
    started_at: datetime
    source: str = Field(description="`start` (a server started with it), `config` (a live edit) or `autopilot` "
                        "(a class earned, widened or lost automation)")
    replay: dict[str, Any] | None = Field(
        description="When the change handed the model more decisions: the old and new policy replayed on "
        "recent cases (auto-decided share, error rate on labelled cases with its 95% interval)")
    evidence: dict[str, Any] | None = Field(
        default=None, description="For an autopilot move: each class moved, how, and the evidence behind it")


class PolicyOut(BaseModel):
    version: str
    content: dict[str, Any]
    rejected_edit: str | None = Field(description="A config edit this server refused; the policy above stays")
    history: list[PolicyChangeOut] = Field(description="Every policy that has been in force, newest first")


def policy_view(runtime: Runtime) -> dict[str, Any]:
    with runtime.engine.connect() as conn:
        changes = history.history(conn=conn)
    policy = runtime.policy
    return {"version": policy.version, "content": policy.as_dict(),
            "rejected_edit": runtime.problems.get("config"), "history": changes}


@api_router.get("", response_model=PolicyOut)
def read_policy(runtime: RuntimeDep, admin: AdminTokenDep) -> dict[str, Any]:
    """The automation policy this server applies now, any config edit it rejected, and the history."""
    return policy_view(runtime)


@api_router.get("/autopilot")
def read_autopilot(runtime: RuntimeDep, admin: AdminTokenDep) -> dict[str, Any]:
    """Where autopilot stands (`automation.mode = "autopilot"`): per class of the live model, the threshold it
    has earned (1: assist), the configured ceiling, the looks spent and when the next comes, how many wrong
    audits make it fall back, and every move with its evidence, newest first."""
    return pilot.view(runtime)


TargetError = Annotated[float, Query(gt=0, le=0.5, description="Largest error rate to accept among automatic "
                                     "decisions")]
Confidence = Annotated[float, Query(ge=0.5, lt=1, description="How sure the bound must be")]


def threshold_suggestion(runtime: Runtime, target_error: float, confidence: float,
                         since: datetime | None = None) -> dict[str, Any]:
    live = runtime.deployment.live
    with runtime.engine.connect() as conn:
        return evidence.suggestion(conn=conn, card=live.card, model_id=live.id, labels=live.labels,
                                   target=target_error, confidence=confidence, since=since)


@api_router.get("/thresholds", responses={422: ERRORS[422]})
def suggest_thresholds(runtime: RuntimeDep, admin: AdminTokenDep, target_error: TargetError = 0.02,
                       confidence: Confidence = 0.95, since: Since = None) -> dict[str, Any]:
    """The lowest thresholds, overall and per predicted class, whose error among automatic decisions is at most
    `target_error` with the stated `confidence` (Learn-then-Test, exact binomial bounds): from live labels
    (queued cases reviewed, blind audits) and, apart, from the held-out rows on the model card. What
    `decider thresholds suggest --json` prints; `suggested` is what `--write` would put in the config."""
    return threshold_suggestion(runtime, target_error, confidence, aware(since))


@page_router.get("/admin/policy")
def policy_page(request: Request, runtime: RuntimeDep, user: AdminDep, target_error: TargetError = 0.02,
                confidence: Confidence = 0.95) -> HTMLResponse:
    view = policy_view(runtime)
    suggestion = threshold_suggestion(runtime, target_error, confidence)
    return render(request, "admin_policy.html", **view, models_problem=runtime.problems.get("models"),
                  restart_problem=runtime.problems.get("restart"),
                  reload_seconds=runtime.settings.server.reload_seconds, suggestion=suggestion,
                  risk_charts=riskchart.charts(suggestion, current=view["content"]["threshold"]),
                  autopilot=pilot.view(runtime), audit_budget=runtime.settings.automation.audit_budget,
                  audit_plan=runtime.audit_plan,
                  unknown_classes=sorted(set(runtime.policy.class_thresholds) - set(runtime.deployment.live.labels)))
