"""The monitoring cache (monitoring/cache.py): figures summed from per-hour tallies kept between requests equal
the figures computed afresh from every case, after new cases, reviews, audits and outcomes, and for windows
whose ends cut an hour. On SQLite and PostgreSQL, through the real API and database."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from decider.automation.evidence import audit_rates
from decider.cases.service import CASE
from decider.db import make_engine, now
from decider.monitoring import cache as cache_module
from decider.monitoring.figures import compute
from decider.monitoring.service import monitoring_figures
from helpers import AMBIGUOUS, SETOSA, api, review_headers, settings_for, submit

COMPARED = ("drift", "novelty", "outputs", "quality", "timeline", "flags")


def same(a: dict, b: dict) -> None:
    """Equal figures; means to rounding (summed per hour, or at once)."""
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    assert a["window"]["cases"] == b["window"]["cases"]
    means = [[f.pop("live_mean") for f in fig["drift"]["features"]] + [fig["outputs"].pop("mean_confidence")]
             for fig in (a, b)]
    assert means[0] == pytest.approx(means[1], rel=1e-12)
    for key in COMPARED:
        assert a[key] == b[key], key


def recomputed(engine, card: dict, since: datetime | None, until: datetime | None,  # type: ignore[no-untyped-def]
               last: int | None = None) -> dict:
    """The figures from every case of the window, read whole and filtered here: no cache at all."""
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(CASE).order_by(CASE.c.created_at, CASE.c.id)).mappings()]
        rates = audit_rates(conn)
    rows = [r for r in rows
            if (since is None or r["created_at"] >= since) and (until is None or r["created_at"] < until)]
    if last:
        rows = rows[-last:]
    return compute(rows, card, since=since, until=until or now(), last=last, audit_rates=rates)


def stream(client, h, n: int, rng: np.random.Generator) -> list[dict]:  # type: ignore[no-untyped-def]
    """n cases: most like training, some shifted far out (novel, queued), some ambiguous (queued)."""
    out = []
    for _ in range(n):
        kind = rng.random()
        features = SETOSA if kind < 0.5 else AMBIGUOUS if kind < 0.8 else \
            {"sepal length (cm)": float(rng.uniform(8, 9)), "petal width (cm)": float(rng.uniform(2.6, 3))}
        out.append(submit(client, h, features))
    return out


def test_cached_figures_follow_new_cases_reviews_and_outcomes(tmp_path, db_url):
    rng = np.random.default_rng(14)
    with api(settings_for(tmp_path, db_url, automation="audit_rate = 0.5")) as (client, h):
        runtime = client.app.state.runtime
        card, engine = runtime.deployment.live.card, runtime.engine
        stream(client, h, 40, rng)
        before = monitoring_figures(engine=engine, card=card)  # builds the cache
        cache = cache_module.cache_for(engine, card, {})
        assert cache.blocks and sum(b.tally.cases for b in cache.blocks.values()) == 40
        cases = stream(client, h, 25, rng)
        reviewer = review_headers(client)
        for case in cases[:12]:  # reviews of queued cases and blind audits; then outcomes, some contradicting
            if case["status"] == "pending" or case.get("audit"):
                assert client.post(f"/api/v1/review/cases/{case['id']}/claim", headers=reviewer).status_code == 200
                assert client.post(f"/api/v1/review/cases/{case['id']}/resolve", json={"label": "virginica"},
                                   headers=reviewer).status_code == 200
        for case in cases[5:20]:
            assert client.post(f"/api/v1/cases/{case['id']}/outcome", json={"label": "setosa"},
                               headers=h).status_code == 200
        after = monitoring_figures(engine=engine, card=card)
        assert cache_module.cache_for(engine, card, {}) is cache  # the same cache, brought up to date
    assert after["window"]["cases"] == 65 and before["window"]["cases"] == 40
    assert after["quality"] != before["quality"] and after["quality"]["overall"]["model_accuracy"]["n"] == 15
    fresh = make_engine(settings_for(tmp_path, db_url).database_url)
    try:
        same(after, monitoring_figures(engine=fresh, card=card))  # a new engine: a cache built from scratch
        same(after, recomputed(fresh, card, datetime.fromisoformat(after["window"]["since"]), None))
    finally:
        fresh.dispose()


def test_windows_that_cut_hours_and_the_newest_n(tmp_path, db_url):
    rng = np.random.default_rng(3)
    with api(settings_for(tmp_path, db_url)) as (client, h):
        runtime = client.app.state.runtime
        card, engine = runtime.deployment.live.card, runtime.engine
        ids = [c["id"] for c in stream(client, h, 60, rng)]
        start = now() - timedelta(hours=30)
        with engine.begin() as conn:  # spread over 30 hours, before any look (the cache is built after)
            for n, case_id in enumerate(ids):
                at = start + timedelta(minutes=29 * n + 7)
                conn.execute(update(CASE).where(CASE.c.id == case_id).values(created_at=at))
        cache_module._CACHES.pop(engine, None)  # the warm-up at start looked before the move: as after a restart
        at = now()
        windows = [
            (at - timedelta(hours=20, minutes=13), None, None),  # since cuts an hour
            (at - timedelta(hours=25, minutes=41), at - timedelta(hours=3, minutes=17), None),  # both ends do
            (at - timedelta(hours=9, minutes=50), at - timedelta(hours=9, minutes=5), None),  # inside one hour
            (None, None, 17),  # the newest 17
            (at - timedelta(hours=12), None, 500),  # fewer than asked for: the whole window
        ]
        for since, until, last in windows:
            got = monitoring_figures(engine=engine, card=card, since=since, until=until, last=last)
            same(got, recomputed(engine, card, since, until, last))
        assert got["window"]["cases"] < 60


def test_a_change_without_its_event_is_not_seen_until_a_new_cache(tmp_path, sqlite_url):
    """Why every change a figure reads writes a case_event: the cache learns of changes from them."""
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        runtime = client.app.state.runtime
        card, engine = runtime.deployment.live.card, runtime.engine
        case = submit(client, h, AMBIGUOUS)
        monitoring_figures(engine=engine, card=card)
        with engine.begin() as conn:
            conn.execute(update(CASE).where(CASE.c.id == case["id"]).values(outcome="virginica"))
        stale = monitoring_figures(engine=engine, card=card)
        assert stale["quality"]["overall"]["model_accuracy"]["n"] == 0
        cache_module._CACHES.pop(engine)
        assert monitoring_figures(engine=engine, card=card)["quality"]["overall"]["model_accuracy"]["n"] == 1
