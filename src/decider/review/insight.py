"""Beside the model's suggestion, for the case page and the review API: why the model suggests it
(decider/explain.py) and how people decided the most similar cases (decider/precedent.py).

Both are the model's view of the case, so both are hidden exactly where the suggestion is
(`service.model_hidden`: at shadow, and on a blind audit). An explanation names the classes the model weighed;
a list of similar cases with people's labels is a suggestion of its own (a nearest-neighbour vote) drawn in
the model's feature space; either would make a blind review, the label that checks the model, no longer blind.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import Engine

from decider import explain, precedent
from decider.registry.artifacts import LoadedModel
from decider.registry.cards import out_of_range, percentile
from decider.review.service import model_hidden
from decider.runtime import Deployment, Runtime
from decider.threads import one_thread

PRECEDENTS = 5
CACHED = 4096  # explanations kept per process: a case's inputs never change, so its explanation neither
# The time an explanation may take on a page load. Each model's cost per scored row is measured as it explains
# (its first explanation on FIRST_ROWS rows), and the rows an explanation scores follow from it: a forest gets
# fewer permutation chains than a linear model gets background rows, within explain.ROW_BUDGET.
EXPLAIN_SECONDS = 0.05
FIRST_ROWS, MIN_ROWS = 256, 64
_cost: dict[str, float] = {}  # seconds per scored row, per model version (a moving average)
_explained: OrderedDict[tuple[int, str], dict[str, Any] | None] = OrderedDict()
_backgrounds: dict[str, np.ndarray] = {}
_lock = threading.Lock()
_indexes: weakref.WeakKeyDictionary[Engine, precedent.Precedents] = weakref.WeakKeyDictionary()


def model_input(model: LoadedModel, values: Mapping[str, Any]) -> list[float]:
    """The row the model scores for these fields: the scorer's own builder (`LoadedModel.matrix`, as
    cases/service.py: scored_by calls it), so an explanation or a neighbour search sees what scoring saw."""
    return model.matrix([values])[0].tolist()


def scoring_model(dep: Deployment, case: Mapping[str, Any]) -> LoadedModel | None:
    """The deployed model that scored the case; None once that version is no longer deployed."""
    for model in (dep.live, dep.candidate, *dep.shadows):
        if model is not None and model.id == case["model_version"]:
            return model
    return None


def explanation(runtime: Runtime, case: Mapping[str, Any]) -> dict[str, Any] | None:
    """Why the model that scored the case suggests its class over the runner-up, each feature against its
    training distribution; None where the model's view is hidden or no deployed model can say."""
    if model_hidden(case) or case["model_version"] is None or not case["probabilities"]:
        return None
    model = scoring_model(runtime.deployment, case)
    if model is None:
        return None
    key = (int(case["id"]), model.id)
    with _lock:
        if key in _explained:
            _explained.move_to_end(key)
            return _explained[key]
    cost = _cost.get(model.id)
    budget = FIRST_ROWS if cost is None else int(np.clip(EXPLAIN_SECONDS / cost, MIN_ROWS, explain.ROW_BUDGET))
    started = time.perf_counter()
    try:
        with one_thread():
            found = explain.explain(model.estimator, model.labels, model.features,
                                    model_input(model, case["features"]), _background(model),
                                    seed=int(case["id"]), budget=budget)  # seeded: the same on every reload
        per_row = (time.perf_counter() - started) / max(found.rows, 1)
        _cost[model.id] = per_row if cost is None else 0.8 * cost + 0.2 * per_row
        result: dict[str, Any] | None = _described(found, model, case["features"])
    except ValueError:  # the model cannot score these values (overflow): nothing to explain
        result = None
    with _lock:
        _explained[key] = result
        while len(_explained) > CACHED:
            _explained.popitem(last=False)
    return result


def _background(model: LoadedModel) -> np.ndarray:
    if model.id not in _backgrounds:
        fill = model.guard.fill.tolist() if model.guard.fill is not None else None
        _backgrounds[model.id] = explain.background_from_stats(model.features, model.card.get("feature_stats", {}),
                                                               fill=fill)
    return _backgrounds[model.id]


def _described(found: explain.Explanation, model: LoadedModel, sent: Mapping[str, Any]) -> dict[str, Any]:
    """The explanation with each value placed in its training distribution (the card's statistics)."""
    stats, fields = model.card.get("feature_stats", {}), model.contract.fields
    out = found.as_dict() | {"model_version": model.id}
    for share in out["features"]:
        name = share["name"]
        if (spec := fields.get(name)) is not None and spec.type != "number":  # codes: show what the client sent
            share |= {"value": sent.get(name), "percentile": None, "outside": False, "training_mean": None,
                      "training_std": None, "training_min": None, "training_max": None}
            continue
        s, v = stats.get(name), share["value"]
        share |= {"percentile": percentile(s, v) if s and v is not None else None,
                  "outside": bool(s and v is not None and out_of_range(s, v)),
                  "training_mean": s.get("mean") if s else None, "training_std": s.get("std") if s else None,
                  "training_min": s.get("min") if s else None, "training_max": s.get("max") if s else None}
    return out


def precedents(runtime: Runtime, case: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The PRECEDENTS person-decided cases nearest this one in the live model's features, nearest first;
    None where the model's view is hidden."""
    if model_hidden(case):
        return None
    live = runtime.deployment.live
    index = _holder(runtime.engine).current(runtime.engine, live)
    # A few spare: a decision undone since the build drops out in `details`.
    hits = precedent.nearest(index, model_input(live, case["features"]), PRECEDENTS + 3, exclude=[case["id"]])
    with runtime.engine.connect() as conn:
        return precedent.details(conn, hits)[:PRECEDENTS]


def refresh_precedents(runtime: Runtime) -> None:
    """The background tick (automation/reload.py): rebuild this process's index when it is due."""
    _holder(runtime.engine).refresh(runtime.engine, runtime.deployment.live)


def _holder(engine: Engine) -> precedent.Precedents:
    with _lock:
        holder = _indexes.get(engine)
        if holder is None:
            holder = _indexes[engine] = precedent.Precedents()
        return holder
