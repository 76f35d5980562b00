"""Shadow models: score every case with `[models] shadow` too, off the request path, and store the result.

After each committed batch of new cases, ingest hands (case id, features) to a bounded queue: a few
microseconds, whatever the shadow models do. One thread drains the queue in batches (one `predict_proba`
per model per batch, since the call's fixed cost dominates), bounds each call by `shadow_timeout_ms`, and
writes one `shadow_prediction` row per case and model, with the error when the model failed or was late, by
the cases' own INSERT route (`cases/bulk.insert_all`). 5,000 rows cost ~90 ms of CPU, where per-row scores,
SQLAlchemy's executemany and batches of 256 took ~230 ms: with a shadow model, each case cost ~75% more.
Nothing here can change a decision or a response.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np

from decider.cases.bulk import insert_all
from decider.cases.tables import ShadowPrediction
from decider.contract import Value
from decider.db import now
from decider.monitoring.metrics import SHADOW_DROPPED
from decider.registry.artifacts import LoadedModel
from decider.runtime import Runtime
from decider.scoring import scores_from

log = logging.getLogger("decider.shadow")
SHADOW = ShadowPrediction.__table__  # type: ignore[attr-defined]
BATCH = 1000  # cases per drain: one commit, and one turn on SQLite's write lock, per 1,000 rather than per 256
MAX_PENDING = 10_000  # beyond this, cases are not shadow-scored (counted in `dropped`) rather than queued


@dataclass(frozen=True)
class Job:
    case_id: int
    features: Mapping[str, Value]
    models: tuple[LoadedModel, ...]


class ShadowRunner:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.dropped = 0
        self.stored = 0
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=MAX_PENDING)
        # Each model's calls run on its own thread, so a stuck one can be abandoned at the time bound
        # without holding up the drain thread or the other shadow models.
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._thread = threading.Thread(target=self._run, name="decider-shadow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Store what is queued (within `timeout`), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    def enqueue_rows(self, rows: list[dict[str, Any]]) -> None:
        """Called after a batch of new cases is committed: never blocks, never raises."""
        models = self.runtime.deployment.shadows
        if not models:
            return
        for row in rows:
            try:
                self._queue.put_nowait(Job(row["id"], row["features"], models))
            except queue.Full:
                self.dropped += 1
                SHADOW_DROPPED.inc()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                jobs.append(more)
            try:
                self._store(self._score(jobs))
            except Exception:  # never let one bad batch end shadow scoring
                log.exception("shadow batch of %d cases failed", len(jobs))

    def _score(self, jobs: list[Job]) -> list[dict[str, Any]]:
        by_model: dict[str, tuple[LoadedModel, list[Job]]] = {}
        for job in jobs:
            for model in job.models:
                by_model.setdefault(model.id, (model, []))[1].append(job)
        rows: list[dict[str, Any]] = []
        timeout = self.runtime.settings.models.shadow_timeout_ms / 1000
        for model, its_jobs in by_model.values():
            rows.extend(self._score_model(model, its_jobs, timeout))
        return rows

    def _score_model(self, model: LoadedModel, jobs: list[Job], timeout: float) -> list[dict[str, Any]]:
        start = time.perf_counter()
        probs, error = None, None
        try:
            matrix = model.matrix([job.features for job in jobs])  # category values coded by its own contract
            pool = self._pools.get(model.id)
            if pool is None:
                pool = self._pools[model.id] = ThreadPoolExecutor(1, thread_name_prefix=f"shadow-{model.id}")
            future = pool.submit(model.predict_proba, matrix)
            try:
                probs = future.result(timeout=timeout)
            except FutureTimeout:
                future.cancel()
                error = f"timeout: no answer within {timeout * 1000:.0f} ms"
        except Exception as exc:  # whatever the shadow model raises is recorded, never raised
            error = f"{type(exc).__name__}: {exc}"[:500]
        latency = (time.perf_counter() - start) * 1000
        at = now()
        finite = np.isfinite(probs).all(axis=1) if probs is not None else np.zeros(len(jobs), bool)
        scored = iter(scores_from(model.labels, probs[finite])) if probs is not None else iter(())
        rows = []
        for job, ok in zip(jobs, finite.tolist(), strict=True):
            row: dict[str, Any] = {"case_id": job.case_id, "model_version": model.id, "prediction": None,
                                   "confidence": None, "probabilities": None, "error": error,
                                   "latency_ms": latency, "created_at": at}
            if ok:  # one vectorised step for the batch's finite rows, as ingest scores
                score = next(scored)
                row |= {"prediction": score.prediction, "confidence": score.confidence,
                        "probabilities": score.probabilities}
            elif probs is not None:
                row["error"] = "non-finite: the model overflowed on these values"  # NaN cannot go into JSON
            rows.append(row)
        return rows

    def _store(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self.runtime.engine.begin() as conn:
            insert_all(conn, SHADOW, rows)
        self.stored += len(rows)
