"""Shadow models: every case scored by them too, stored, never returned; a slow or failing one harms nothing."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from sqlalchemy import select

from decider.cases.tables import ShadowPrediction
from decider.config import load_settings
from decider.registry.artifacts import LoadedModel
from helpers import AMBIGUOUS, SETOSA, api, model_versions, submit, write_config


def shadow_rows(client, n: int, timeout: float = 20.0) -> list:  # type: ignore[no-untyped-def]
    """Wait (with a deadline) until `n` shadow rows are stored, and return them."""
    deadline = time.monotonic() + timeout
    while True:
        with client.app.state.runtime.engine.connect() as conn:
            rows = conn.execute(select(ShadowPrediction).order_by(ShadowPrediction.id)).all()
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_shadow_predictions_are_stored_and_never_returned(tmp_path, db_url):
    models = model_versions(tmp_path)
    settings = load_settings(write_config(tmp_path, db_url, models_dir=models, models='shadow = ["iris-v2"]'))
    with api(settings) as (client, h):
        cases = [submit(client, h, SETOSA if i % 2 else AMBIGUOUS) for i in range(20)]
        rows = shadow_rows(client, 20)
        read_back = [client.get(f"/api/v1/cases/{c['id']}", headers=h).text for c in cases]
        listed = client.get("/api/v1/cases?limit=500", headers=h).text
        shadow = client.app.state.runtime.deployment.shadows[0]
    assert sorted(r.case_id for r in rows) == sorted(c["id"] for c in cases)
    assert all(r.model_version == "iris-v2" and r.error is None and r.prediction for r in rows)
    assert all(abs(sum(r.probabilities.values()) - 1) < 1e-9 for r in rows)
    # Each row is the shadow model's own answer for its case, stored with its types (bulk.insert_all).
    sent = {c["id"]: SETOSA if i % 2 else AMBIGUOUS for i, c in enumerate(cases)}
    for r in rows:
        probs = shadow.predict_proba(shadow.matrix([sent[r.case_id]]))[0]
        assert r.probabilities == dict(zip(shadow.labels, probs.tolist(), strict=True))
        assert (r.prediction, r.confidence) == (shadow.labels[probs.argmax()], probs.max())
        assert r.created_at.tzinfo is not None and r.latency_ms >= 0
    assert all(c["model_version"] == "iris-v1" for c in cases)
    for text in [*(str(c) for c in cases), *read_back, listed]:
        assert "iris-v2" not in text and "shadow" not in text


class Blocking:
    """A real fitted version that does not answer until the test lets it: a shadow model stuck on something."""

    release = threading.Event()

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.classes_ = inner.classes_  # type: ignore[attr-defined]

    def predict_proba(self, X):  # type: ignore[no-untyped-def]
        self.release.wait(30)
        return self.inner.predict_proba(X)  # type: ignore[attr-defined]


class Broken(Blocking):
    def predict_proba(self, X):  # type: ignore[no-untyped-def]
        raise RuntimeError("this version cannot score")


def shadow_like(model: LoadedModel, cls: type, model_id: str) -> LoadedModel:
    return LoadedModel(id=model_id, card=model.card, estimator=cls(model.estimator), guard=model.guard)


def test_a_stuck_or_failing_shadow_neither_slows_nor_fails_requests(tmp_path, sqlite_url):
    models = model_versions(tmp_path)
    # A long reload period: nothing rebuilds the deployment set up below while the test runs.
    config = write_config(tmp_path, sqlite_url, models_dir=models, models="shadow_timeout_ms = 100",
                          extra="[server]\nreload_seconds = 60\n")
    with api(load_settings(config)) as (client, h):
        runtime = client.app.state.runtime
        live = runtime.deployment.live
        stuck, broken = shadow_like(live, Blocking, "stuck-v1"), shadow_like(live, Broken, "broken-v1")
        runtime.deployment = replace(runtime.deployment, shadows=(stuck, broken))
        try:
            # Every answer arrives while the stuck shadow is still blocked: shadows are off the request path.
            cases = [submit(client, h, SETOSA) for _ in range(10)]
            assert not Blocking.release.is_set()
            rows = shadow_rows(client, 20)
        finally:
            Blocking.release.set()
    assert all(c["status"] == "decided" and c["model_version"] == "iris-v1" for c in cases)
    by_model: dict[str, list] = {}
    for r in rows:
        by_model.setdefault(r.model_version, []).append(r)
    assert {r.case_id for r in by_model["stuck-v1"]} == {c["id"] for c in cases}
    assert all(r.error == "timeout: no answer within 100 ms" and r.prediction is None for r in by_model["stuck-v1"])
    assert all(r.error == "RuntimeError: this version cannot score" for r in by_model["broken-v1"])


def test_cases_past_a_full_shadow_queue_are_counted_not_queued(tmp_path, sqlite_url):
    from prometheus_client import REGISTRY

    from decider.registry.shadow import MAX_PENDING, ShadowRunner

    models = model_versions(tmp_path)
    settings = load_settings(write_config(tmp_path, sqlite_url, models_dir=models, models='shadow = ["iris-v2"]'))
    with api(settings) as (client, _):
        runner = ShadowRunner(client.app.state.runtime)  # not started: nothing drains its queue
        before = REGISTRY.get_sample_value("decider_shadow_dropped_total") or 0.0
        runner.enqueue_rows([{"id": i, "features": SETOSA} for i in range(MAX_PENDING + 3)])
        assert runner.dropped == 3 and runner._queue.qsize() == MAX_PENDING
        assert REGISTRY.get_sample_value("decider_shadow_dropped_total") == before + 3
