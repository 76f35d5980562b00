"""Precedent: the cases most like this one that a person has already decided.

"Like" is the distance in the live model's features, each scaled by its training spread (the card's mean and
standard deviation), so a feature measured in thousands does not drown one measured in tenths; a missing
value counts as the training mean. A category field's codes are not on a scale: it counts as one training
spread when the values differ and nothing when they agree. Only decisions by people count (`decided_by` a
person's name): the model's own decisions, or a fallback's, would only echo the model back.

The index holds every person-decided case's row at once, in memory, so a page view asks it rather than the
database: a flat float32 matrix and its row norms, searched exactly by one matrix-vector product on one BLAS
thread (100,000 cases: about 1-4 ms at 2 to 64 features on the 2-core machine). Measured there on 100,000
rows, scikit-learn's NearestNeighbors was slower at every width: its KD and ball trees answered in 1-60 ms
after 0.2-3 s builds (trees lose their edge past a handful of dimensions), its brute force in 85-230 ms
(OpenMP threads contending for busy cores). `build`, `merged` and `nearest` are pure, on arrays.

`Precedents` keeps a process's index and follows new decisions off the request path (automation/reload.py's
tick), reading only the cases whose decisions changed since its last look. The thin database layer is at the
bottom.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydantic_core import from_json
from sqlalchemy import Connection, Engine, Text, and_, cast, func, select

from decider.cases.service import CASE, EVENT
from decider.registry.artifacts import LoadedModel
from decider.review.deadlines import FALLBACK_ACTOR
from decider.threads import one_thread

AUTOMATIC = ("model", FALLBACK_ACTOR)  # decided_by values that are not a person
REBUILD_FACTOR = 20
FULL_SECONDS = 600.0  # a build from every case, at least this often
OVERLAP_EVENTS = 1000
DECISION_EVENTS = ("decided", "corrected", "undone", "audited")  # what can make or unmake a person's decision
SPARE = 16  # extra candidates re-ranked exactly, against float32 rounding in the first pass
MIN_REBUILD_SECONDS = 1.0


@dataclass(frozen=True)
class Index:
    model_id: str
    features: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    levels: dict[int, int]  # category columns: how many categories each has
    ids: np.ndarray  # case ids, row by row
    Z: np.ndarray  # the rows, standardised (float32)
    norms: np.ndarray  # |Z_i|^2
    signature: tuple[Any, ...] = ()  # where the case history stood when it was last read (`signature`)
    built_at: float = 0.0  # time.monotonic() of the last look at the database
    build_seconds: float = 0.0  # what that look cost (0 after a build from every case: see load_index)
    full_at: float = 0.0  # time.monotonic() of the last build from every case

    def __len__(self) -> int:
        return len(self.ids)


def scaling(features: Sequence[str], stats: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) per feature from the card's training statistics; a feature without them, or with no
    spread, is left unscaled."""
    center = np.array([float((stats.get(n) or {}).get("mean", 0.0)) for n in features])
    scale = np.array([float((stats.get(n) or {}).get("std", 1.0)) for n in features])
    ok = np.isfinite(center)
    center = np.where(ok, center, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return center, scale


def standardised(X: np.ndarray, center: np.ndarray, scale: np.ndarray,
                 levels: Mapping[int, int] | None = None) -> np.ndarray:
    """Rows in training-spread units; a missing value is the training mean (0), a non-finite one too. Each
    category column (`levels`: column -> how many categories) becomes one column per category, 1/sqrt(2) for
    the case's value, so two different values are 1 apart, as one training spread is."""
    X = np.asarray(X, dtype=float)
    with np.errstate(all="ignore"):
        Z = (X - center) / scale
    Z = np.where(np.isfinite(Z), Z, 0.0)
    if not levels:
        return Z
    parts = [Z[:, [j for j in range(X.shape[1]) if j not in levels]]]
    for j, n in sorted(levels.items()):
        codes = X[:, j]
        parts.append((codes[:, None] == np.arange(n)[None, :]) / np.sqrt(2.0))  # missing or unseen: no column
    return np.hstack(parts)


def build(*, model_id: str, features: Sequence[str], ids: Sequence[int] | np.ndarray, X: np.ndarray,
          center: np.ndarray, scale: np.ndarray, levels: Mapping[int, int] | None = None,
          signature: tuple[Any, ...] = ()) -> Index:
    """An index over the rows of X (the decided cases' model inputs), ids row by row."""
    started = time.monotonic()
    ids = np.asarray(ids, dtype=np.int64)
    # float32 halves the memory (100,000 cases of 64 features: 26 MB); candidates are re-ranked exactly.
    Z = standardised(X.reshape(len(ids), len(features)), center, scale, levels).astype(np.float32)
    return Index(model_id, tuple(features), center, scale, dict(levels or {}), ids, Z,
                 np.einsum("ij,ij->i", Z, Z), signature, started, time.monotonic() - started, started)


def merged(index: Index, ids: Sequence[int] | np.ndarray, X: np.ndarray, signature: tuple[Any, ...],
           drop: Iterable[int] = ()) -> Index:
    """The index with the rows of `drop` (cases looked at again) taken out and these cases' rows put in."""
    ids = np.asarray(ids, dtype=np.int64)
    fresh = build(model_id=index.model_id, features=index.features, ids=ids, X=X, center=index.center,
                  scale=index.scale, levels=index.levels)
    keep = ~np.isin(index.ids, np.union1d(ids, np.asarray(list(drop), dtype=np.int64)))
    return replace(index, ids=np.concatenate([index.ids[keep], ids]), Z=np.vstack([index.Z[keep], fresh.Z]),
                   norms=np.concatenate([index.norms[keep], fresh.norms]), signature=signature)


def nearest(index: Index, x: Sequence[float], k: int, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
    """The k nearest (case id, distance) to model input x, nearest first (ties: the lower id), leaving out
    `exclude` (the case itself). Exact: candidates from |Z|^2 - 2 Z.z, then their distances computed directly."""
    if not len(index) or k <= 0:
        return []
    skip = set(exclude)
    z = standardised(np.asarray(x, dtype=float)[None], index.center, index.scale, index.levels)[0].astype(np.float32)
    with one_thread("blas"):  # a second thread only spins on a busy machine: 3 ms against 15 ms at 100,000
        d2 = index.norms - 2 * (index.Z @ z)
    want = min(len(index), k + len(skip) + SPARE)
    rows = np.argpartition(d2, want - 1)[:want] if want < len(index) else np.arange(len(index))
    dist = np.sqrt(((index.Z[rows] - z) ** 2).sum(axis=1, dtype=np.float64))
    hits = sorted(zip(dist.tolist(), index.ids[rows].tolist(), strict=True))
    return [(case_id, d) for d, case_id in hits if case_id not in skip][:k]


def due(index: Index | None, at: float) -> bool:
    """Whether to look for changes: never more often than REBUILD_FACTOR times the last build's cost."""
    return index is None or at - index.built_at >= max(MIN_REBUILD_SECONDS, REBUILD_FACTOR * index.build_seconds)


class Precedents:
    """One process's index for one database, swapped whole (a request sees the old or the new one).

    A look at the database when due (`refresh`, from the background tick) reads the history events since the
    last it saw (decided, corrected, undone: each an indexed range read) and puts those cases in or takes them
    out. Every FULL_SECONDS, or when the live model changes, it reads every person-decided case again, which
    also picks up decisions stored without an event (a bulk load)."""

    def __init__(self) -> None:
        self.index: Index | None = None
        self._lock = threading.Lock()

    def current(self, engine: Engine, model: LoadedModel) -> Index:
        """The index for this model; built now if there is none for it (the first page after a start or a
        model switch, before the background tick has built it)."""
        index = self.index
        if index is not None and index.model_id == model.id:
            return index
        with self._lock:
            index = self.index
            if index is None or index.model_id != model.id:
                index = self.index = load_index(engine, model)
            return index

    def refresh(self, engine: Engine, model: LoadedModel) -> bool:
        """Look for new person decisions when due; True when the index changed."""
        at = time.monotonic()
        index = self.index
        if index is not None and index.model_id == model.id and not due(index, at):
            return False
        with self._lock:
            index = self.index
            if index is None or index.model_id != model.id or at - index.full_at >= FULL_SECONDS:
                self.index = load_index(engine, model)
                return True
            with engine.connect() as conn:
                last, touched = changed_since(conn, index.signature[0] if index.signature else 0)
                if touched:
                    ids, X = rows_of(conn, model, CASE.c.id.in_(touched), PERSON_DECIDED)
                    index = merged(index, ids, X, (last,), drop=touched)
                else:
                    index = replace(index, signature=(last,))
            self.index = replace(index, built_at=at, build_seconds=time.monotonic() - at)
            return bool(touched)


# ---- the database: a thin layer ----

PERSON_DECIDED = and_(CASE.c.status == "decided", CASE.c.decided_by.is_not(None),
                      CASE.c.decided_by.not_in(AUTOMATIC))


def signature(conn: Connection) -> tuple[Any, ...]:
    """Where the case history stands: its last event id (the primary key's maximum, read from its index)."""
    return (int(conn.execute(select(func.max(EVENT.c.id))).scalar() or 0),)


def changed_since(conn: Connection, last: int) -> tuple[int, list[int]]:
    """(the last event id now, the cases a person decided, corrected or undid after event `last`). The range
    starts OVERLAP_EVENTS earlier: on PostgreSQL a transaction can commit after one holding a later id."""
    now_last = signature(conn)[0]
    if now_last <= last:
        return last, []
    touched = conn.execute(select(EVENT.c.case_id).where(EVENT.c.id > last - OVERLAP_EVENTS,
                                                         EVENT.c.kind.in_(DECISION_EVENTS)).distinct()).scalars()
    return now_last, sorted(touched)


def rows_of(conn: Connection, model: LoadedModel, *where: Any) -> tuple[list[int], np.ndarray]:
    """(ids, model inputs) of the cases matching `where`, the rows built by the scorer's own builder
    (`LoadedModel.matrix`). The features come as JSON text, parsed by pydantic_core (several times faster
    than the driver's json module)."""
    ids, records = [], []
    for case_id, text in conn.execute(select(CASE.c.id, cast(CASE.c.features, Text)).where(*where)):
        ids.append(case_id)
        records.append(from_json(text))
    return ids, model.matrix(records)


def load_index(engine: Engine, model: LoadedModel) -> Index:
    """Read every person-decided case and index it by the model's input."""
    started = time.monotonic()
    with engine.connect() as conn:
        sig = signature(conn)
        ids, X = rows_of(conn, model, PERSON_DECIDED)
    center, scale = scaling(model.features, model.card.get("feature_stats", {}))
    levels = {j: len(spec.categories) for j, name in enumerate(model.features)
              if (spec := model.contract.fields.get(name)) is not None and spec.type == "category"}
    index = build(model_id=model.id, features=model.features, ids=ids, X=X, center=center, scale=scale,
                  levels=levels, signature=sig)
    # The next look reads only what is new: its cost, not this one's, sets how soon it comes (`due`).
    return replace(index, built_at=started, full_at=started, build_seconds=0.0)


def details(conn: Connection, hits: Sequence[tuple[int, float]]) -> list[dict[str, Any]]:
    """The hits as they stand now (a correction since the build shows; an undone decision drops out), in the
    hits' order, each with its distance."""
    if not hits:
        return []
    query = select(CASE.c.id, CASE.c.decision, CASE.c.decided_by, CASE.c.decided_at).where(
        CASE.c.id.in_([case_id for case_id, _ in hits]), PERSON_DECIDED)
    found = {row["id"]: dict(row) for row in conn.execute(query).mappings()}
    return [found[case_id] | {"distance": distance} for case_id, distance in hits if case_id in found]
