"""The first look at /monitoring after a start (monitoring/background.py): the process reads the default window
into the cache in the background as it starts, and a request whose window needs many cases read that no
block holds answers "computing" (a page that reloads; 503 with Retry-After on the API) instead of waiting, then
the figures once the read is done. Through the real app and database, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import insert, update

from decider.app import create_app
from decider.cases.service import CASE
from decider.db import now
from decider.monitoring import background
from decider.monitoring import cache as cache_module
from decider.monitoring.service import monitoring_figures
from helpers import AMBIGUOUS, PASSWORD, SETOSA, api, review_headers, settings_for, submit
from test_monitoring_cache import recomputed, same


def log_in(client) -> None:  # type: ignore[no-untyped-def]
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]
    assert client.post("/login", data={"name": "root", "password": PASSWORD, "csrf": token},
                       follow_redirects=False).status_code == 303


def copies(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    """n more cases like the newest one, spread over the last 20 hours."""
    with engine.begin() as conn:
        newest = conn.execute(CASE.select().order_by(CASE.c.id.desc()).limit(1)).mappings().one()
        start = now() - timedelta(hours=20)
        rows = [dict(newest) | {"key": f"copy-{i}", "created_at": start + i * timedelta(hours=20) / n}
                for i in range(n)]
        for r in rows:
            del r["id"]
        conn.execute(insert(CASE), rows)


def wait_for_warm_up(engine) -> cache_module.Cache:  # type: ignore[no-untyped-def]
    for _ in range(200):
        cache = cache_module._CACHES.get(engine)
        if cache is not None and cache.build is not None and cache.build.done.is_set():
            return cache
        time.sleep(0.05)
    raise AssertionError("no warm-up read finished")


def test_a_long_first_read_runs_in_the_background(tmp_path, db_url, monkeypatch):
    monkeypatch.setattr(background, "INLINE_ROWS", 50)  # 300 cases count as "many" here
    with api(settings_for(tmp_path, db_url)) as (client, h):
        runtime = client.app.state.runtime
        engine, card = runtime.engine, runtime.deployment.live.card
        submit(client, h, SETOSA)
        submit(client, h, AMBIGUOUS)
        copies(engine, 298)
        wait_for_warm_up(engine)
        cache_module._CACHES.pop(engine)  # as after a restart: no block held
        headers = review_headers(client, "root")
        cold = cache_module.cache_for(engine, card, {})
        with cold.lock:  # a read in progress: the background read waits on it, the request does not
            t = time.perf_counter()
            busy = client.get("/api/v1/monitoring", headers=headers)
            assert time.perf_counter() - t < 5
            assert busy.status_code == 503 and busy.headers["retry-after"] == str(background.RETRY_SECONDS)
            assert busy.json()["computing"]["expected"] == 300 and busy.json()["computing"]["read"] == 0
            log_in(client)
            page = client.get("/monitoring")
            assert page.status_code == 200 and 'id="computing"' in page.text
            assert "Computing the figures since" in page.text
            assert '<meta http-equiv="refresh"' in page.text and "monitoring-figures" not in page.text
            assert client.get("/monitoring", params={"format": "json"}).status_code == 503
            build = cold.build
            assert build is not None and not build.done.is_set()
        assert build.done.wait(30) and build.error is None and build.read == 300
        ready = client.get("/api/v1/monitoring", headers=headers)
        assert ready.status_code == 200 and ready.json()["window"]["cases"] == 300
        assert cache_module.cache_for(engine, card, {}).build is build  # no second read started
        since = now() - timedelta(days=1)
        same(monitoring_figures(engine=engine, card=card, since=since), recomputed(engine, card, since, None))
        page = client.get("/monitoring")
        assert 'id="computing"' not in page.text and 'id="monitoring-figures"' in page.text


def test_the_process_reads_the_default_window_as_it_starts(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url)
    with api(settings) as (client, h):
        for features in [SETOSA, AMBIGUOUS] * 20:
            submit(client, h, features)
        runtime = client.app.state.runtime
        engine = runtime.engine
        with engine.begin() as conn:  # some are two days old
            conn.execute(update(CASE).where(CASE.c.id <= 10).values(created_at=now() - timedelta(days=2)))
    app = create_app(settings)  # a restart
    engine = app.state.runtime.engine
    with TestClient(app) as client:
        cache = wait_for_warm_up(engine)
        assert cache.build is not None and cache.build.read == 40 and cache.build.error is None
        blocks = dict(cache.blocks)
        assert sum(b.tally.cases for b in blocks.values()) == 40
        figures = client.get("/api/v1/monitoring", headers=review_headers(client, "root")).json()
        assert figures["window"]["cases"] == 40
        assert all(cache.blocks[hour] is block for hour, block in blocks.items())  # served from what was read
    engine.dispose()


def test_small_first_reads_stay_in_the_request(tmp_path, sqlite_url):
    """Fewer cases than INLINE_ROWS: read in the request, no background read, no "computing"."""
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        engine = client.app.state.runtime.engine
        rng = np.random.default_rng(1)
        for _ in range(5):
            submit(client, h, SETOSA if rng.random() < 0.5 else AMBIGUOUS)
        wait_for_warm_up(engine)
        cache_module._CACHES.pop(engine)
        got = client.get("/api/v1/monitoring", headers=review_headers(client, "root"))
        assert got.status_code == 200 and got.json()["window"]["cases"] == 5
        assert cache_module._CACHES[engine].build is None


def test_a_read_stopped_half_way_leaves_nothing_behind(tmp_path, sqlite_url, monkeypatch):
    """A stop (the process shutting down) ends a read between two chunks; what it had read is dropped, so the
    next read counts every case once."""
    monkeypatch.setattr("decider.monitoring.queries.COLUMN_CHUNK", 40)
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        runtime = client.app.state.runtime
        engine, card = runtime.engine, runtime.deployment.live.card
        submit(client, h, SETOSA)
        copies(engine, 199)
        wait_for_warm_up(engine)
        cache_module._CACHES.pop(engine)
        cache = cache_module.cache_for(engine, card, {})
        build = background.Build(cache_module.Window(now() - timedelta(days=2), None))
        stops = []

        def stop_after_two(n: int) -> None:
            stops.append(n)
            if len(stops) == 2:
                build.stop.set()
            background.Build.progress(build, n)

        monkeypatch.setattr(build, "progress", stop_after_two)
        build.run(engine, cache)
        assert build.error and "stopped" in build.error and 0 < build.read < 200
        assert not cache.blocks and cache.covered_from is None
        assert monitoring_figures(engine=engine, card=card)["window"]["cases"] == 200
        assert sum(b.tally.cases for b in cache.blocks.values()) == 200
