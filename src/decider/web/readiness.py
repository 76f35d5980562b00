"""`/readyz` for a load balancer: ready while the process can serve, degraded (still 200) while it serves on
its last good policy or models, not ready (503) only when it cannot serve at all.

Taking every replica out because of one typo in `config.toml` would stop a service that was deciding
correctly, so a rejected edit or a refused switch reports itself (here, on the admin pages and as
`decider_config_rejected` / `decider_model_switch_refused` in /metrics) without failing readiness.
"""

from __future__ import annotations

from typing import Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from decider.auth.service import person_for_token
from decider.runtime import Runtime

# runtime.problems key -> what the public answer says: words only, no path, key or value (README, Security).
DEGRADED = {
    "config": "a config edit was rejected",
    "models": "a model switch was refused",
    "restart": "a config change waits for a restart",
}


class ReadyOut(BaseModel):
    status: Literal["ok", "degraded", "not ready"]
    reasons: list[str] = Field(description="Why degraded or not ready, in words that name no path or value")
    details: dict[str, str] | None = Field(
        default=None, description="Only with an admin's review token: each problem in full, by kind")


def database_answers(runtime: Runtime) -> bool:
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # any failure here means the process cannot serve
        return False
    return True


def is_admin(runtime: Runtime, authorization: str) -> bool:
    """Whether `Authorization: Bearer <token>` is an admin's review token; anything else is the public answer."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    try:
        with runtime.engine.connect() as conn:
            return person_for_token(conn=conn, key=token.strip()).role == "admin"
    except Exception:  # a wrong token (DeciderError) or no database: the public answer
        return False


def readiness(runtime: Runtime, authorization: str = "") -> JSONResponse:
    problems = dict(runtime.problems)  # a snapshot: the watcher may change it meanwhile
    reasons = [words for key, words in DEGRADED.items() if key in problems]
    if not database_answers(runtime):
        body = ReadyOut(status="not ready", reasons=["database unavailable", *reasons])
        return JSONResponse(body.model_dump(exclude_none=True), 503)
    body = ReadyOut(status="degraded" if reasons else "ok", reasons=reasons)
    if reasons and is_admin(runtime, authorization):
        body.details = {key: problems[key] for key in DEGRADED if key in problems}
    return JSONResponse(body.model_dump(exclude_none=True), 200)
