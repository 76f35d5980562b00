"""The queue as a reviewer meets it (review.service): order, keyset pages, filters, counts, claims."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from decider.cases.service import CASE, EVENT
from decider.db import make_engine, now, upgrade
from decider.errors import Conflict
from decider.review import service

LABELS = ["setosa", "versicolor", "virginica"]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def queued(i: int, *, confidence: float | None = 0.5, prediction: str | None = "versicolor", shown: bool = True,
           audit: bool = False, model: str | None = "iris-v1", age_minutes: float = 0.0) -> dict[str, Any]:
    """A pending case row as submit() would store it."""
    return {
        "key": f"k{i}", "client": "tests", "features": {"a": 1.0}, "model_version": model, "model_role": "live",
        "probabilities": None if prediction is None else {prediction: confidence},
        "prediction": prediction, "confidence": confidence, "level": "partial", "effective_level": "partial",
        "threshold": 0.9, "policy_version": "p", "route": "auto" if audit else "queue", "show_suggestion": shown,
        "status": "decided" if audit else "pending", "decision": prediction if audit else None,
        "decided_by": "model" if audit else None, "decided_at": now() if audit else None, "audit": audit,
        "review_status": "pending", "created_at": now() - timedelta(minutes=age_minutes),
    }


def add(engine: Engine, rows: list[dict[str, Any]]) -> list[int]:
    with engine.begin() as conn:
        return [conn.execute(insert(CASE).values(r).returning(CASE.c.id)).scalar_one() for r in rows]


def all_pages(engine: Engine, limit: int, **kw: Any) -> list[list[int]]:
    pages, after = [], None
    with engine.connect() as conn:
        while True:
            rows, after = service.queue_page(conn=conn, after=after, limit=limit, **kw)
            pages.append([r["id"] for r in rows])
            if after is None:
                return pages


def test_keyset_pages_by_age_visit_every_case_once_in_order(engine):
    ids = add(engine, [queued(i, confidence=(i * 37 % 100) / 100) for i in range(23)])
    pages = all_pages(engine, 5, sort="age")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert sum(pages, []) == ids


def test_confidence_sort_ranks_shown_cases_then_hidden_ones_by_age(engine):
    conf = [0.71, 0.42, 0.42, 0.88, 0.55, 0.61]
    shown = add(engine, [queued(i, confidence=c) for i, c in enumerate(conf)])
    hidden = add(engine, [queued(10, confidence=0.01, shown=False), queued(11, confidence=0.99, shown=False),
                          queued(12, confidence=0.05, audit=True, shown=False),
                          queued(13, confidence=None, prediction=None, shown=False)])
    ranked = [i for _, i in sorted(zip(conf, shown, strict=True))]
    for limit in (1, 3, 4, 100):  # page boundaries inside each part and across the seam
        assert sum(all_pages(engine, limit, sort="confidence"), []) == ranked + hidden


def test_filter_by_suggested_class_never_matches_hidden_suggestions(engine):
    visible = add(engine, [queued(0, prediction="virginica"), queued(1, prediction="setosa")])
    add(engine, [queued(2, prediction="virginica", shown=False), queued(3, prediction="virginica", audit=True)])
    for sort in ("age", "confidence"):
        assert all_pages(engine, 10, sort=sort, suggested="virginica") == [[visible[0]]]


def test_filter_by_model_version(engine):
    ids = add(engine, [queued(0, model="iris-v1"), queued(1, model="iris-v2"), queued(2, model="iris-v2")])
    assert all_pages(engine, 10, sort="age", model_version="iris-v2") == [ids[1:]]
    assert all_pages(engine, 10, sort="confidence", model_version="iris-v9") == [[]]


def test_a_malformed_cursor_is_a_clear_422(engine):
    with engine.connect() as conn, pytest.raises(service.InvalidInput, match="after"):
        service.queue_page(conn=conn, sort="age", after="v1e999999:3x", limit=5)


def test_stats_count_pending_claimed_and_the_oldest(engine):
    ids = add(engine, [queued(0, age_minutes=90), queued(1, age_minutes=30), queued(2)])
    with engine.begin() as conn:
        service.claim(conn=conn, case_id=ids[1], reviewer="alice", lease_seconds=60)
        conn.execute(update(CASE).where(CASE.c.id == ids[2]).values(review_status="done"))
        stats = service.queue_stats(conn=conn)
    assert (stats.pending, stats.claimed) == (2, 1)
    assert timedelta(minutes=89) < now() - stats.oldest_created_at < timedelta(minutes=91)


def test_claim_next_follows_the_queue_order_and_skips_claimed_cases(engine):
    ids = add(engine, [queued(0, confidence=0.8), queued(1, confidence=0.4), queued(2, confidence=0.6)])
    with engine.begin() as conn:
        assert service.claim_next(conn=conn, reviewer="alice", lease_seconds=60)["id"] == ids[0]
        assert service.claim_next(conn=conn, reviewer="bob", lease_seconds=60)["id"] == ids[1]
        # alice still holds a case: she gets it back, not a second one
        assert service.claim_next(conn=conn, reviewer="alice", lease_seconds=60)["id"] == ids[0]
        assert service.claim_next(conn=conn, reviewer="carol", lease_seconds=60, sort="confidence")["id"] == ids[2]
        assert service.claim_next(conn=conn, reviewer="dave", lease_seconds=60) is None


def test_an_expired_lease_returns_the_case_to_the_queue(engine):
    [case_id] = add(engine, [queued(0)])
    with engine.begin() as conn:
        service.claim(conn=conn, case_id=case_id, reviewer="alice", lease_seconds=60)
        with pytest.raises(Conflict, match="claimed by alice"):
            service.claim(conn=conn, case_id=case_id, reviewer="bob", lease_seconds=60)
        conn.execute(update(CASE).values(claim_expires_at=now() - timedelta(seconds=1)))
        assert service.claim_next(conn=conn, reviewer="bob", lease_seconds=60)["id"] == case_id
        with pytest.raises(Conflict, match="claimed by bob"):
            service.resolve(conn=conn, case_id=case_id, reviewer="alice", label="setosa", labels=LABELS)
        with pytest.raises(Conflict, match="claimed by bob"):
            service.release(conn=conn, case_id=case_id, reviewer="carol")
        service.resolve(conn=conn, case_id=case_id, reviewer="bob", label="setosa", labels=LABELS)
        with pytest.raises(Conflict, match="already resolved"):
            service.resolve(conn=conn, case_id=case_id, reviewer="bob", label="setosa", labels=LABELS)


def test_a_skip_means_later_for_the_skipper_and_nothing_for_others(engine):
    ids = add(engine, [queued(0), queued(1), queued(2)])
    with engine.begin() as conn:
        def next_for(name: str) -> int:
            return service.claim_next(conn=conn, reviewer=name, lease_seconds=60)["id"]

        assert next_for("alice") == ids[0]
        service.release(conn=conn, case_id=ids[0], reviewer="alice")
        assert next_for("alice") == ids[1]  # not the skipped one straight back
        service.release(conn=conn, case_id=ids[1], reviewer="alice")
        assert next_for("alice") == ids[2]  # behind every other waiting case, not just the next
        service.resolve(conn=conn, case_id=ids[2], reviewer="alice", label="setosa", labels=LABELS)
        assert next_for("alice") == ids[0]  # only skipped ones left: in queue order among themselves
        assert next_for("bob") == ids[1]  # for another reviewer a skip changes nothing (ids[0] is alice's now)


def test_renewing_a_claim_writes_no_new_history(engine):
    [case_id] = add(engine, [queued(0)])
    with engine.begin() as conn:
        for _ in range(3):
            service.claim(conn=conn, case_id=case_id, reviewer="alice", lease_seconds=60)
        kinds = conn.execute(select(EVENT.c.kind).where(EVENT.c.case_id == case_id)).scalars().all()
    assert kinds == ["claimed"]


def test_resolving_an_audit_labels_it_but_keeps_the_models_decision(engine):
    [case_id] = add(engine, [queued(0, prediction="setosa", confidence=0.99, audit=True, shown=False)])
    with engine.begin() as conn:
        case = service.claim_next(conn=conn, reviewer="alice", lease_seconds=60)
        view = service.reviewer_view(case)
        assert view["decision"] is view["prediction"] is view["probabilities"] is None
        done = service.resolve(conn=conn, case_id=case_id, reviewer="alice", label="virginica", labels=LABELS)
        kinds = conn.execute(select(EVENT.c.kind).where(EVENT.c.case_id == case_id)).scalars().all()
    assert (done["decision"], done["decided_by"], done["review_label"]) == ("setosa", "model", "virginica")
    assert kinds == ["claimed", "audited"]


def test_model_hidden_is_one_rule():
    assert service.model_hidden({"show_suggestion": True, "audit": False}) is False
    assert service.model_hidden({"show_suggestion": False, "audit": False}) is True
    assert service.model_hidden({"show_suggestion": True, "audit": True}) is True
