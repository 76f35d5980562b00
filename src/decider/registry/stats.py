"""What each model version has done: the versions on disk, their roles, and per-version figures.

Figures per version and role: cases scored, auto-decision rate, agreement with the live model on the same
cases (shadow versions), and accuracy against people's labels (`review_label`) and real outcomes
(`outcome`), each with its count, so a small sample reads as one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, case, func, literal, select

from decider.cases.tables import Case, ShadowPrediction
from decider.certify import Counts, corrected_accuracy
from decider.config import Settings
from decider.contract import Contract
from decider.errors import ModelRefused
from decider.policy import Level, Policy
from decider.registry.artifacts import available, load
from decider.registry.cards import card_path, read_card
from decider.runtime import Deployment, require_replaces

CASE = Case.__table__  # type: ignore[attr-defined]
SHADOW = ShadowPrediction.__table__  # type: ignore[attr-defined]


def roles(*, live: str, candidate: str, canary_percent: float, shadows: list[str] | tuple[str, ...]
          ) -> dict[str, list[str]]:
    """Each version's roles now, by id."""
    out: dict[str, list[str]] = {live: ["live"]}
    if candidate:
        out.setdefault(candidate, []).append(f"candidate ({canary_percent:g}%)")
    for name in shadows:
        out.setdefault(name, []).append("shadow")
    return out


def deployment_roles(dep: Deployment) -> dict[str, list[str]]:
    return roles(live=dep.live.id, candidate=dep.candidate.id if dep.candidate else "",
                 canary_percent=dep.canary_percent, shadows=[s.id for s in dep.shadows])


def catalog(settings: Settings, current: dict[str, list[str]], verify: bool = True,
            contract: Contract | None = None) -> list[dict[str, Any]]:
    """Every version in the models folder with its card's figures, its roles, and whether it would load and
    (given the live `contract`) could be promoted."""
    out = []
    for model_id in available(settings.models_dir):
        try:
            card, status = read_card(card_path(settings.models_dir / f"{model_id}.skops")), "ok"
        except (OSError, ValueError) as exc:  # a broken card is listed as refused, never a crash of the list
            card, status = {}, f"refused: its card cannot be read ({type(exc).__name__})"
        if verify and status == "ok":
            try:
                model = load(settings.models_dir, model_id)
                if contract is not None and "live" not in current.get(model_id, []):
                    require_replaces(model, contract)  # what promote would check first
            except ModelRefused as exc:
                status = f"refused: {exc.message}"
        out.append({
            "id": model_id, "roles": current.get(model_id, []), "features": card.get("features", []),
            "classes": card.get("classes", []), "data_source": card.get("data_source"),
            "created_at": card.get("created_at"),
            "train_accuracy": card.get("train", {}).get("accuracy"), "train_n": card.get("train", {}).get("n"),
            "test_accuracy": card.get("test", {}).get("accuracy"), "test_n": card.get("test", {}).get("n"),
            "estimator": card.get("estimator"), "calibration": calibration_summary(card),
            "status": status,
        })
    return out


def calibration_summary(card: dict[str, Any]) -> dict[str, Any] | None:
    """The card's calibration evidence without the held-out triples (hundreds of rows, read by thresholds)."""
    calibration = card.get("calibration")
    if not isinstance(calibration, dict):
        return None
    return {k: v for k, v in calibration.items() if k != "holdout"}


def _count(condition: Any) -> Any:
    return func.sum(case((condition, 1), else_=0))


def _rate(hits: int | None, n: int | None) -> float | None:
    return round((hits or 0) / n, 4) if n else None


def _would_auto(policy: Policy) -> Any:
    """Whether the policy in force would have let a shadow's prediction decide (rollout share aside)."""
    scored = SHADOW.c.prediction.is_not(None)
    if policy.level is Level.FULL:
        return scored
    if policy.level is not Level.PARTIAL:
        return literal(False)
    whens = [(SHADOW.c.prediction == label, t) for label, t in sorted(policy.class_thresholds.items())]
    threshold = case(*whens, else_=policy.threshold) if whens else literal(policy.threshold)
    return and_(scored, SHADOW.c.confidence >= threshold)


def _labels(prediction: Any) -> list[Any]:
    return [
        _count(CASE.c.review_label.is_not(None)),
        _count(and_(CASE.c.review_label.is_not(None), CASE.c.review_label == prediction)),
        _count(CASE.c.outcome.is_not(None)),
        _count(and_(CASE.c.outcome.is_not(None), CASE.c.outcome == prediction)),
    ]


def _label_figures(labelled: int | None, right: int | None, outcomes: int | None, out_right: int | None
                   ) -> dict[str, Any]:
    return {"labelled": int(labelled or 0), "label_accuracy": _rate(right, labelled),
            "outcomes": int(outcomes or 0), "outcome_accuracy": _rate(out_right, outcomes)}


def _corrected(conn: Connection) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (version, role): the accuracy over every case it scored, corrected for how labels were gathered
    (certify.corrected_accuracy). A shadow's prediction is judged on the same labels as the live one's:
    which cases got a label depended on the live route, which the strata follow either way."""
    from decider.automation.evidence import audit_rates

    labels = (CASE.c.route, CASE.c.audit, CASE.c.review_status, CASE.c.review_label, CASE.c.policy_version,
              CASE.c.audit_probability)
    rates = audit_rates(conn)
    groups: dict[tuple[str, str], Counts] = {}
    own = select(CASE.c.model_version, CASE.c.model_role, CASE.c.confidence, CASE.c.prediction, *labels).where(
        CASE.c.model_version.is_not(None), CASE.c.prediction.is_not(None))
    shadow = select(SHADOW.c.model_version, literal("shadow").label("model_role"), SHADOW.c.confidence,
                    SHADOW.c.prediction, *labels).join(CASE, CASE.c.id == SHADOW.c.case_id).where(
        SHADOW.c.prediction.is_not(None))
    for query in (own, shadow):
        for r in conn.execute(query).mappings():
            groups.setdefault((r["model_version"], r["model_role"]), Counts(rates)).add(r)
    return {key: corrected_accuracy(counts) for key, counts in groups.items()}


def comparison(conn: Connection, policy: Policy) -> list[dict[str, Any]]:
    """Per version and role: cases, auto-decisions, agreement with live, accuracy against people, and the
    accuracy over all its cases corrected for how labels were gathered."""
    rows: list[dict[str, Any]] = []
    scored = select(
        CASE.c.model_version, CASE.c.model_role, func.count(), _count(CASE.c.route == "auto"),
        func.avg(CASE.c.confidence), *_labels(CASE.c.prediction),
    ).where(CASE.c.model_version.is_not(None)).group_by(CASE.c.model_version, CASE.c.model_role)
    for version, role, n, auto, conf, *labels in conn.execute(scored):
        rows.append({"model_version": version, "role": role, "cases": int(n), "auto_decided": int(auto or 0),
                     "auto_rate": _rate(auto, n), "mean_confidence": conf and round(float(conf), 4),
                     "agreement_with_live": None, "compared_with_live": 0,
                     **_label_figures(*labels), "errors": 0, "mean_latency_ms": None})
    on_live = and_(CASE.c.model_role == "live", CASE.c.prediction.is_not(None), SHADOW.c.prediction.is_not(None))
    shadowed = select(
        SHADOW.c.model_version, func.count(), _count(_would_auto(policy)), func.avg(SHADOW.c.confidence),
        _count(on_live), _count(and_(on_live, SHADOW.c.prediction == CASE.c.prediction)),
        *_labels(SHADOW.c.prediction), _count(SHADOW.c.error.is_not(None)), func.avg(SHADOW.c.latency_ms),
    ).join(CASE, CASE.c.id == SHADOW.c.case_id).group_by(SHADOW.c.model_version)
    for version, n, auto, conf, compared, agreed, *rest in conn.execute(shadowed):
        *labels, errors, latency = rest
        rows.append({"model_version": version, "role": "shadow", "cases": int(n), "auto_decided": int(auto or 0),
                     "auto_rate": _rate(auto, n), "mean_confidence": conf and round(float(conf), 4),
                     "agreement_with_live": _rate(agreed, compared), "compared_with_live": int(compared or 0),
                     **_label_figures(*labels), "errors": int(errors or 0),
                     "mean_latency_ms": latency and round(float(latency), 3)})
    corrected = _corrected(conn)
    for r in rows:
        c = corrected.get((r["model_version"], r["role"]))
        r["corrected_accuracy"] = c and {k: c[k] for k in ("value", "low", "high", "labelled", "cases")}
    return sorted(rows, key=lambda r: (r["model_version"], r["role"] or ""))
