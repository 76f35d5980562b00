"""`GET /api/v1/models`: the versions, who holds which role, the switch history and per-version figures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from decider.cases.schemas import ErrorOut
from decider.deps import AdminTokenDep, RuntimeDep
from decider.registry import deploy, stats
from decider.runtime import Runtime

router = APIRouter(prefix="/api/v1/models", tags=["models"],
                   responses={401: {"model": ErrorOut, "description": "Missing or invalid API key"},
                              403: {"model": ErrorOut, "description": "Not an admin's review token"}})


class VersionOut(BaseModel):
    id: str
    roles: list[str] = Field(description="`live`, `candidate (N%)`, `shadow`; empty when it serves no role")
    features: list[str]
    classes: list[str]
    data_source: str | None
    created_at: str | None
    train_accuracy: float | None
    train_n: int | None
    test_accuracy: float | None
    test_n: int | None
    estimator: str | None = Field(default=None, description="What was fitted, as scikit-learn prints it")
    calibration: dict[str, Any] | None = Field(
        default=None, description="Held-out evidence from training: accuracy, log loss, Brier score and expected "
        "calibration error before and after calibration, and the reliability diagram's points")
    status: str = Field(description="`ok`, or why the version would be refused")


class FiguresOut(BaseModel):
    model_version: str
    role: str | None = Field(description="The role it scored in: `live`, `candidate` or `shadow`")
    cases: int
    auto_decided: int = Field(description="For shadows: cases the policy in force would have let it decide")
    auto_rate: float | None
    mean_confidence: float | None
    agreement_with_live: float | None = Field(description="Shadows: share of cases where it agreed with live")
    compared_with_live: int
    labelled: int = Field(description="Cases with a person's label")
    label_accuracy: float | None
    outcomes: int = Field(description="Cases with a recorded real outcome")
    outcome_accuracy: float | None
    corrected_accuracy: dict[str, Any] | None = Field(
        default=None, description="Accuracy over every case it scored, corrected for how labels were gathered "
        "(queued cases counted whole, automatic decisions scaled up from blind audits): `value`, a 95% interval "
        "`low`-`high`, `labelled`, `cases`")
    errors: int = Field(description="Shadows: failed or timed-out predictions")
    mean_latency_ms: float | None


class SwitchOut(BaseModel):
    id: int
    role: str
    model_id: str
    previous: str | None
    actor: str
    at: datetime


class DeploymentOut(BaseModel):
    live: str
    candidate: str | None
    canary_percent: float
    shadows: list[str]
    problem: str | None = Field(description="Why the last switch or config edit was refused, if it was")


class FieldOut(BaseModel):
    type: str = Field(description="`number`")
    min: float | None = Field(description="The smallest value seen in training (a hint, not a limit)")
    max: float | None
    nullable: bool = Field(description="May be null or left out (missing in some training rows)")


class ContractOut(BaseModel):
    version: str = Field(description="Changes when a field, its type or whether it may be null changes")
    source: str | None = Field(description="The training data the contract was read from")
    fields: dict[str, FieldOut] = Field(description="What clients send in `features`, by name")


class ModelsOut(BaseModel):
    contract: ContractOut = Field(description="The input contract in force: the live model's")
    deployment: DeploymentOut
    versions: list[VersionOut]
    figures: list[FiguresOut]
    history: list[SwitchOut]


def overview(runtime: Runtime) -> dict[str, Any]:
    """Everything the API and the admin page show, from one deployment snapshot."""
    dep = runtime.deployment
    with runtime.engine.connect() as conn:
        figures = stats.comparison(conn, runtime.policy)
        history = deploy.history(conn)
    return {
        "contract": dep.contract.as_dict(),
        "deployment": {"live": dep.live.id, "candidate": dep.candidate.id if dep.candidate else None,
                       "canary_percent": dep.canary_percent, "shadows": [s.id for s in dep.shadows],
                       "problem": runtime.problems.get("models")},
        "versions": stats.catalog(runtime.settings, stats.deployment_roles(dep), contract=dep.contract),
        "figures": figures,
        "history": history,
    }


@router.get("", response_model=ModelsOut)
def list_models(runtime: RuntimeDep, admin: AdminTokenDep) -> dict[str, Any]:
    """Model versions with their roles, per-version figures to compare them, and the switch history."""
    return overview(runtime)
