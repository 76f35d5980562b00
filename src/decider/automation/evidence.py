"""The labels behind a threshold suggestion: what decider holds, arranged as certify.py's strata.

Two bodies of evidence, never mixed, because they describe different populations:
- training-time: the held-out rows on the live model's card, (confidence, predicted, correct) each. A
  random sample of the training data, so valid for live cases only while inputs do not drift.
- live: the cases the live model scored. Queued cases are a census (a person labels every one; one still
  waiting counts as an error); automatic decisions are a population sampled by blind audits, grouped by the
  audit rate in force when each was routed. Automatic decisions routed with audit rate 0 were never checked,
  so each counts as an error (the worst case): pass `since` to start after the audit rate was raised.
Outcomes are not used: which cases get one is up to the client, so they are not a sample of anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, select

from decider.automation import history
from decider.cases.tables import Case
from decider.certify import Evidence, Sample, Suggestion, live_evidence, suggest

CASE = Case.__table__  # type: ignore[attr-defined]


def training_evidence(card: Mapping[str, Any]) -> Evidence:
    rows = (card.get("calibration") or {}).get("holdout") or []
    if not rows:
        return Evidence()
    conf = np.array([float(r[0]) for r in rows])
    pred = np.array([str(r[1]) for r in rows])
    wrong = np.array([not bool(r[2]) for r in rows])
    return Evidence(samples=[Sample(conf, wrong, conf, pred, pred)])


def audit_rates(conn: Connection) -> dict[str, float]:
    """The audit rate of every policy version the history holds."""
    return {h["version"]: float(h["content"].get("audit_rate", 0.0)) for h in history.history(conn=conn, limit=10_000)}


def live_rows(conn: Connection, model_id: str, since: datetime | None) -> list[dict[str, Any]]:
    query = select(CASE.c.id, CASE.c.created_at, CASE.c.confidence, CASE.c.prediction, CASE.c.route, CASE.c.audit,
                   CASE.c.audit_probability, CASE.c.review_status, CASE.c.review_label, CASE.c.reviewed_at,
                   CASE.c.policy_version).where(
        CASE.c.model_version == model_id, CASE.c.model_role == "live", CASE.c.confidence.is_not(None),
        CASE.c.prediction.is_not(None))
    if since is not None:
        query = query.where(CASE.c.created_at >= since)
    return [dict(r) for r in conn.execute(query).mappings()]


def _certified(c: Any) -> dict[str, Any]:
    return {"threshold": c.threshold, "error_bound": c.bound, "error_seen": c.error_seen, "automates": c.coverage,
            "cases": c.cases, "labelled": c.labelled, "more_labels_needed": c.needed}


def describe(s: Suggestion, total: int) -> dict[str, Any]:
    """The suggestion as JSON, with the risk-coverage curve behind the overall threshold: per threshold
    (every 0.01), the share of cases it would automate, the error seen among them and its bound."""
    c = s.curve
    points = [{"threshold": float(c.grid[i]), "automates": float(c.cases[i] / total) if total else 0.0,
               "error_seen": None if np.isnan(c.errors_seen[i]) else float(c.errors_seen[i]),
               "error_bound": float(c.upper[i]), "labelled": int(c.labelled[i])}
              for i in range(len(c.grid)) if round(c.grid[i] * 1000) % 10 == 0 and c.cases[i] > 0]
    return {"labelled": s.labelled, "overall": _certified(s.overall),
            "per_class": {k: _certified(v) for k, v in s.per_class.items()}, "curve": points}


def suggestion(*, conn: Connection, card: Mapping[str, Any], model_id: str, labels: list[str], target: float,
               confidence: float, since: datetime | None = None) -> dict[str, Any]:
    """Both suggestions, and the one to use: live evidence where it certifies, else training-time evidence."""
    rows = live_rows(conn, model_id, since)
    live, unchecked = live_evidence(rows, audit_rates(conn))
    train = training_evidence(card)
    held_out = len((card.get("calibration") or {}).get("holdout") or [])
    # Two bodies of evidence are tested and the one that certifies is used: each is tested at half the
    # allowed error, so that picking between them after seeing both keeps the stated confidence.
    each = 1 - (1 - confidence) / 2
    out: dict[str, Any] = {
        "target_error": target, "confidence": confidence, "confidence_each": each, "model_version": model_id,
        "since": since.isoformat() if since else None,
        "training": describe(suggest(train, target=target, confidence=each, labels=labels,
                                     total=held_out), held_out) | {"rows": held_out},
        "live": describe(suggest(live, target=target, confidence=each, labels=labels, total=len(rows)),
                         len(rows)) | {"cases": len(rows), "unchecked_automatic": unchecked},
    }
    def certifies(body: dict[str, Any]) -> bool:
        return any(c["threshold"] is not None for c in [body["overall"], *body["per_class"].values()])

    source = "live" if certifies(out["live"]) else "training"
    chosen = out[source]
    out["suggested"] = {
        "source": source if certifies(chosen) else None,
        "threshold": chosen["overall"]["threshold"] if chosen["overall"]["threshold"] is not None else 1.0,
        "class_thresholds": {k: (c["threshold"] if c["threshold"] is not None else 1.0)
                             for k, c in chosen["per_class"].items()},
    }
    return out
