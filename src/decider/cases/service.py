"""Submitting, reading and listing cases. The hot path (submit) uses Core statements: ~15x cheaper."""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, select

from decider.cases.bulk import insert_new
from decider.cases.tables import Case, CaseEvent
from decider.contract import Value
from decider.db import now
from decider.errors import NotFound
from decider.novelty import unscorable
from decider.policy import Level, needs_model, routes, stable_fraction
from decider.registry.artifacts import LoadedModel
from decider.runtime import Deployment, Runtime
from decider.scoring import Score, scores_from

log = logging.getLogger("decider.ingest")
CASE = Case.__table__  # type: ignore[attr-defined]
EVENT = CaseEvent.__table__  # type: ignore[attr-defined]
HIDDEN_LEVELS = {Level.HUMAN_ONLY.value, Level.SHADOW.value}
LEVEL_VALUE = {level: level.value for level in Level}  # a plain str for the row (Enum.value is a slow property)
MODEL_FIELDS = ("probabilities", "prediction", "confidence", "threshold", "novelty")  # the model's view


def pick_model(dep: Deployment, key: str) -> tuple[LoadedModel, str]:
    """The canary share, by a stable hash of the case key, goes to the candidate; the rest to live."""
    if dep.candidate is not None and stable_fraction(key, "canary") * 100 < dep.canary_percent:
        return dep.candidate, "candidate"
    return dep.live, "live"


def new_keys(n: int) -> list[str]:
    """Keys for `n` cases sent without one: 32 hex digits like a UUID's, the first 12 the time in milliseconds
    and the other 20 random. New keys go to the end of the (client, key) index, not to a random page of it: with
    300,000 cases stored, a batch of 1,000 stored in ~29 ms against ~60 ms with random keys (uuid4)."""
    at, noise = f"{time.time_ns() // 1_000_000:012x}", secrets.token_hex(10 * n)
    return [at + noise[20 * i:20 * i + 20] for i in range(n)]


class Submission(NamedTuple):  # a tuple: a batch makes 1,000 of them, a frozen dataclass costs 4x more each
    client: str
    features: Mapping[str, Value]
    key: str | None


def predict_each_if_needed(model: LoadedModel, matrix: np.ndarray) -> np.ndarray:
    """Class probabilities for the batch; when the model refuses the batch (a forest refuses values past
    float32's range), row by row, so only the rows it refuses get NaN, and each refusal is logged."""
    try:
        return model.predict_proba(matrix)
    except ValueError:
        out = np.full((len(matrix), len(model.labels)), np.nan)
        for j in range(len(matrix)):
            try:
                out[j] = model.predict_proba(matrix[j:j + 1])[0]
            except ValueError as exc:
                log.warning("model %s refused a case's values: %s", model.id, str(exc).splitlines()[0])
        return out


def missing_required(model: LoadedModel, matrix: np.ndarray) -> list[str | None]:
    """Per row, the first feature the model uses that is missing though the model's contract never allows
    a null for it (None when there is none): such a row must not be scored from an imputed value."""
    fields = model.contract.fields
    required = [j for j, name in enumerate(model.features) if not (name in fields and fields[name].nullable)]
    if not required:
        return [None] * len(matrix)
    gaps = np.isnan(matrix[:, required])
    first = gaps.argmax(axis=1).tolist()
    return [model.features[required[j]] if gap else None for j, gap in zip(first, gaps.any(axis=1).tolist(),
                                                                             strict=True)]


def score_batch(runtime: Runtime, subs: Sequence[Submission]) -> list[dict[str, Any]]:
    """Score and route a batch of submissions into case rows. No I/O: one predict_proba and one guard check
    per model, because scikit-learn's fixed cost per call (~110 us) dwarfs the cost per row; what is left per
    row is the routing (`policy.routes`) and the row itself."""
    policy, deployment, plan = runtime.policy, runtime.deployment, runtime.audit_plan  # one snapshot per batch
    fresh = iter(new_keys(sum(1 for sub in subs if not sub.key)))
    keys = [sub.key or next(fresh) for sub in subs]
    picks = [pick_model(deployment, key) for key in keys]
    scores: list[Score | None] = [None] * len(subs)
    novel: list[list[dict[str, Any]] | None] = [None] * len(subs)
    if needs_model(policy.level):
        for model in {id(m): m for m, _ in picks}.values():
            idx = [i for i, (m, _) in enumerate(picks) if m is model] if deployment.candidate else range(len(subs))
            scored_by(model, [subs[i].features for i in idx], idx, scores, novel)
    at, contract_version = now(), deployment.contract.version  # the version is a hash: once per batch
    level, policy_version = policy.level.value, policy.version
    predictions = [score.prediction if score else None for score in scores]
    confidences = [score.confidence if score else None for score in scores]
    audit_probabilities = [None if plan is None or score is None else plan.probability(score.prediction,
                                                                                         score.confidence)
                           for score in scores]
    routed = routes(policy, keys, predictions, confidences, [random.random() for _ in subs],
                    [bool(reasons) for reasons in novel], audit_probabilities)
    rows = []
    for sub, key, (model, role), score, reasons, prediction, routing in zip(
            subs, keys, picks, scores, novel, predictions, routed, strict=True):
        auto = routing.route == "auto"
        rows.append({
            "key": key, "client": sub.client, "features": dict(sub.features), "contract_version": contract_version,
            "novelty": reasons, "model_version": model.id if reasons is not None else None,
            "model_role": role if reasons is not None else None,
            "probabilities": score.probabilities if score else None,
            "prediction": prediction, "confidence": score.confidence if score else None,
            "level": level, "effective_level": LEVEL_VALUE[routing.level], "threshold": routing.threshold,
            "policy_version": policy_version, "route": routing.route, "show_suggestion": routing.show_suggestion,
            "status": "decided" if auto else "pending", "decision": prediction if auto else None,
            "decided_by": "model" if auto else None, "decided_at": at if auto else None, "audit": routing.audit,
            "audit_probability": routing.audit_probability,
            "review_status": "pending" if (not auto or routing.audit) else None, "created_at": at,
        })
    return rows


def scored_by(model: LoadedModel, features: Sequence[Mapping[str, Value]], idx: Sequence[int],
              scores: list[Score | None], novel: list[list[dict[str, Any]] | None]) -> None:
    """Fill `scores` and `novel` at `idx` for the rows `model` scores: one call for the batch's matrix (its
    rows from `model.matrix`, which codes category values by the model's own contract)."""
    matrix = model.matrix(features)
    probs = predict_each_if_needed(model, matrix)
    finite = np.isfinite(probs).all(axis=1)
    scored = iter(scores_from(model.labels, probs[finite]))  # one vectorised step for the rows it can score
    for i, ok, reasons, gap in zip(idx, finite.tolist(), model.guard.check(matrix, features),
                                   missing_required(model, matrix), strict=True):
        score = next(scored) if ok else None
        if gap:  # a field the model needs and the contract never lets be null (a switch raced the check)
            reasons.append({"kind": "unscorable", "feature": gap, "message": f"{gap} is missing"})
        elif score is not None:
            scores[i] = score
        else:  # values so extreme the model overflows: a case for a person, never an error
            reasons.append(unscorable(model.id))
        novel[i] = reasons  # [] when nothing is unusual; None stays for a case no model checked


CHUNK = 500  # keys per `IN (...)`: well within every engine's limit on bound parameters


def by_client(pairs: set[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """(client, keys) in chunks of at most CHUNK keys, for `client = ? AND key IN (...)` lookups."""
    for client in {c for c, _ in pairs}:
        keys = [k for c, k in pairs if c == client]
        for start in range(0, len(keys), CHUNK):
            yield client, keys[start:start + CHUNK]


def store_batch(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
    """Insert new cases in the caller's transaction; a (client, key) already stored, or repeated within the
    batch, returns the stored case instead: (row, created).

    Every row is offered to the INSERT, which skips a key already stored (bulk.insert_new); only those skipped
    are read back, so the usual batch of new cases costs no lookup, and a key stored meanwhile by another
    process is found, not an error."""
    new: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        new.setdefault((row["client"], row["key"]), row)
    ids = insert_new(conn, list(new.values()))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for client, keys in by_client(set(new) - set(ids)):
        query = select(CASE).where(CASE.c.client == client, CASE.c.key.in_(keys))
        found |= {(r["client"], r["key"]): dict(r) for r in conn.execute(query).mappings()}
    if ids:
        # The columns a new case has no value in yet (its review, claim, outcome) were left to the database's
        # NULL rather than bound 8,000 times a batch; the returned rows carry them like a row read back.
        later = dict.fromkeys(c.name for c in CASE.columns if c.name not in rows[0] and c.name != "id")
        for ident, case_id in ids.items():
            new[ident]["id"] = case_id
            new[ident].update(later)
    results = []
    for row in rows:
        ident = (row["client"], row["key"])
        stored = new[ident] if ident in ids else found[ident]
        results.append((stored, stored is row))
    return results


def first_events(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A case's first steps (created, scored, decided by the model), read off the case row itself.

    They are not stored as events: the row already holds every fact, and one insert per case instead
    of three keeps ingest fast. Events store what happens later (claims, reviews, outcomes).
    """
    at = row["created_at"]
    events: list[dict[str, Any]] = [
        {"case_id": row["id"], "kind": "created", "actor": row["client"], "at": at, "detail": None}]
    if row["model_version"] is not None:
        detail: dict[str, Any] = {"prediction": row["prediction"], "confidence": row["confidence"]}
        if row.get("novelty"):  # why the model could not decide it alone, in the case's own history
            detail["novelty"] = [reason["message"] for reason in row["novelty"]]
        events.append({"case_id": row["id"], "kind": "scored", "actor": row["model_version"], "at": at,
                       "detail": detail})
    if row["route"] == "auto":
        events.append({"case_id": row["id"], "kind": "decided", "actor": "model", "at": at,
                       "detail": {"decision": row["decision"], "audit": row["audit"]}})
    return events


def public(row: Mapping[str, Any], fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The case as a client sees it: the model's output only where the level lets people see it. `fields`, the
    names to keep (all by default): picked, not copied whole, where a batch answers 1,000 cases."""
    out = dict(row) if fields is None else {name: row[name] for name in fields}
    if row["effective_level"] in HIDDEN_LEVELS:
        out |= dict.fromkeys(MODEL_FIELDS)
    out["level"] = row["effective_level"]
    return out


def get_case(*, conn: Connection, case_id: int) -> dict[str, Any]:
    row = conn.execute(select(CASE).where(CASE.c.id == case_id)).mappings().first()
    if row is None:
        raise NotFound(f"no case {case_id}")
    return dict(row)


def client_case(*, conn: Connection, case_id: int, client: str) -> dict[str, Any]:
    """A case of `client`'s own; another client's case is as unknown as one that does not exist (404)."""
    row = conn.execute(select(CASE).where(CASE.c.id == case_id, CASE.c.client == client)).mappings().first()
    if row is None:
        raise NotFound(f"no case {case_id}")
    return dict(row)


def list_cases(*, conn: Connection, client: str, status: str | None, after: int | None,
               limit: int) -> list[dict[str, Any]]:
    """`client`'s cases oldest first, keyset-paginated on the id, so a page costs the same at any depth."""
    query = select(CASE).where(CASE.c.client == client).order_by(CASE.c.id).limit(limit)
    if status:
        query = query.where(CASE.c.status == status)
    if after is not None:
        query = query.where(CASE.c.id > after)
    return [dict(r) for r in conn.execute(query).mappings()]
