"""Submitting, reading and listing cases. The hot path (submit) uses Core statements: ~15x cheaper."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert, select

from decider.cases.tables import Case, CaseEvent
from decider.db import now
from decider.errors import InvalidInput, NotFound
from decider.policy import Level, needs_model, route, stable_fraction
from decider.registry.artifacts import LoadedModel
from decider.runtime import Runtime
from decider.scoring import Score, feature_vector, score_from

CASE = Case.__table__  # type: ignore[attr-defined]
EVENT = CaseEvent.__table__  # type: ignore[attr-defined]
HIDDEN_LEVELS = {Level.HUMAN_ONLY.value, Level.SHADOW.value}


def check_features(expected: list[str], given: Mapping[str, float]) -> None:
    """Exactly the model's features: name the first missing or unknown one."""
    for name in expected:
        if name not in given:
            raise InvalidInput(f"features.{name}: missing (expected {expected})", field=f"features.{name}")
    for name in given:
        if name not in expected:
            raise InvalidInput(f"features.{name}: unknown feature (expected {expected})", field=f"features.{name}")


def pick_model(runtime: Runtime, key: str) -> tuple[LoadedModel, str]:
    """The canary share, by a stable hash of the case key, goes to the candidate; the rest to live."""
    dep = runtime.deployment
    if dep.candidate is not None and stable_fraction(key, "canary") * 100 < dep.canary_percent:
        return dep.candidate, "candidate"
    return dep.live, "live"


def score_one(model: LoadedModel, features: Mapping[str, float]) -> Score:
    probs = model.predict_proba([feature_vector(model.features, features)])[0]
    return score_from(model.labels, probs)


def existing(conn: Connection, client: str, key: str) -> dict[str, Any] | None:
    row = conn.execute(select(CASE).where(CASE.c.client == client, CASE.c.key == key)).mappings().first()
    return dict(row) if row else None


def submit(*, runtime: Runtime, conn: Connection, client: str, features: Mapping[str, float],
           key: str | None) -> tuple[dict[str, Any], bool]:
    """Score, route and store one case in the caller's transaction; return (row, created)."""
    deployment, policy = runtime.deployment, runtime.policy
    check_features(deployment.features, features)
    if key is not None and (row := existing(conn, client, key)) is not None:
        return row, False
    key = key or uuid.uuid4().hex
    model, role = pick_model(runtime, key)
    score = score_one(model, features) if needs_model(policy.level) else None
    routing = route(policy, case_key=key, prediction=score and score.prediction,
                    confidence=score and score.confidence, audit_draw=random.random())
    at = now()
    auto = routing.route == "auto"
    row: dict[str, Any] = {
        "key": key, "client": client, "features": dict(features),
        "model_version": model.id if score else None, "model_role": role if score else None,
        "probabilities": score.probabilities if score else None,
        "prediction": score.prediction if score else None,
        "confidence": score.confidence if score else None,
        "level": policy.level.value, "effective_level": routing.level.value,
        "threshold": routing.threshold, "policy_version": policy.version, "route": routing.route,
        "show_suggestion": routing.show_suggestion,
        "status": "decided" if auto else "pending",
        "decision": score.prediction if auto and score else None,
        "decided_by": "model" if auto else None, "decided_at": at if auto else None,
        "audit": routing.audit, "review_status": "pending" if (not auto or routing.audit) else None,
        "review_label": None, "reviewed_by": None, "reviewed_at": None, "review_note": None,
        "claimed_by": None, "claim_expires_at": None, "outcome": None, "outcome_at": None,
        "created_at": at,
    }
    row["id"] = conn.execute(insert(CASE).values(row).returning(CASE.c.id)).scalar_one()
    events = [{"case_id": row["id"], "kind": "created", "actor": client, "at": at, "detail": None}]
    if score:
        events.append({"case_id": row["id"], "kind": "scored", "actor": model.id, "at": at,
                       "detail": {"prediction": score.prediction, "confidence": score.confidence}})
    if auto:
        events.append({"case_id": row["id"], "kind": "decided", "actor": "model", "at": at,
                       "detail": {"decision": row["decision"], "audit": routing.audit}})
    conn.execute(insert(EVENT), events)
    return row, True


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """The case as a client sees it: the model's output only where the level lets people see it."""
    out = dict(row)
    if out["effective_level"] in HIDDEN_LEVELS:
        out["probabilities"] = out["prediction"] = out["confidence"] = out["threshold"] = None
    out["level"] = out["effective_level"]
    return out


def get_case(*, conn: Connection, case_id: int) -> dict[str, Any]:
    row = conn.execute(select(CASE).where(CASE.c.id == case_id)).mappings().first()
    if row is None:
        raise NotFound(f"no case {case_id}")
    return dict(row)


def list_cases(*, conn: Connection, status: str | None, after: int | None, limit: int) -> list[dict[str, Any]]:
    """Oldest first, keyset-paginated on the id, so a page costs the same at any depth."""
    query = select(CASE).order_by(CASE.c.id).limit(limit)
    if status:
        query = query.where(CASE.c.status == status)
    if after is not None:
        query = query.where(CASE.c.id > after)
    return [dict(r) for r in conn.execute(query).mappings()]
