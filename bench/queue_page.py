"""How fast is the review queue with 100,000 pending cases?

Seeds 100k pending cases with one bulk Core insert per 10k rows (80% with a shown suggestion, 15% at
shadow, 5% blind audits; two model versions), then times, in process and through the real app
(FastAPI TestClient, logged in, templates rendered): the queue page in each order, deep keyset pages,
the filters, and claim_next. SQLite always; PostgreSQL too when DECIDER_TEST_POSTGRES_URL is set.

    python bench/queue_page.py [--cases 100000] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text
from sqlmodel import Session

from decider.app import create_app
from decider.auth.service import add_user
from decider.cases.service import CASE
from decider.config import load_settings
from decider.db import make_engine, now, upgrade
from decider.review import service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import postgres_database  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["setosa", "versicolor", "virginica"]


def rows(n: int, rng: random.Random) -> Iterator[dict]:
    start = now() - timedelta(days=3)
    for i in range(n):
        kind = rng.random()
        shown, audit = kind < 0.80, kind >= 0.95
        label = rng.choice(LABELS)
        conf = round(rng.uniform(0.99, 1.0) if audit else rng.uniform(0.34, 0.9), 6)
        yield {
            "key": f"bench-{i}", "client": "bench", "features": {"sepal length (cm)": 5.8, "petal width (cm)": 1.2},
            "model_version": "iris-v1" if rng.random() < 0.7 else "iris-v2", "model_role": "live",
            "probabilities": {label: conf}, "prediction": label, "confidence": conf,
            "level": "partial", "effective_level": "partial" if shown or audit else "shadow", "threshold": 0.9,
            "policy_version": "bench", "route": "auto" if audit else "queue", "show_suggestion": shown,
            "status": "decided" if audit else "pending", "decision": label if audit else None,
            "decided_by": "model" if audit else None, "audit": audit, "review_status": "pending",
            "created_at": start + timedelta(seconds=2.5 * i),
        }


def seed(url: str, n: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    batch: list[dict] = []
    with engine.begin() as conn:
        for row in rows(n, random.Random(1)):
            batch.append(row)
            if len(batch) == 10_000:
                conn.execute(insert(CASE), batch)
                batch = []
        if batch:
            conn.execute(insert(CASE), batch)
    # Statistics (and, on PostgreSQL, the visibility map that index-only scans need), as the database's
    # own maintenance would have them after a bulk load.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text('VACUUM ANALYZE "case"' if conn.dialect.name == "postgresql" else "ANALYZE"))
    with Session(engine) as session:
        add_user(session=session, name="bench", password="bench password", role="reviewer")
        session.commit()
    engine.dispose()


def timed(fn: Callable[[], object], runs: int) -> str:
    fn()  # warm: first query plans, template compilation
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return f"p50 {statistics.median(ms):7.2f} ms   p95 {ms[int(len(ms) * 0.95) - 1]:7.2f} ms   max {ms[-1]:7.2f} ms"


def page(client: TestClient, path: str) -> Callable[[], object]:
    def get() -> None:
        response = client.get(path)
        assert response.status_code == 200 and "pending-count" in response.text, response.text[:300]
    return get


def deep_cursor(client: TestClient, query: str, pages: int) -> str:
    """Follow 'Next page' links to find a cursor far into the queue."""
    path = "/review?" + query
    for _ in range(pages):
        link = re.search(r'href="(/review\?[^"]+)" rel="next"', client.get(path).text)
        path = link[1].replace("&amp;", "&")
    return path


def bench(url: str, label: str, n: int, runs: int, tmp: Path) -> None:
    t = time.perf_counter()
    seed(url, n)
    print(f"\n== {label}: {n:,} pending cases seeded in {time.perf_counter() - t:.1f} s")
    config = tmp / f"config-{label}.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[models]\ndir = "{ROOT / "models"}"\nlive = "iris-v1"\n')
    app = create_app(load_settings(config))
    engine = app.state.runtime.engine
    with TestClient(app) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]
        client.post("/login", data={"name": "bench", "password": "bench password", "csrf": token})
        cases = [
            ("queue page, oldest first", "/review"),
            ("queue page, least confident first", "/review?sort=confidence"),
            ("  page 100 deep (age)", deep_cursor(client, "sort=age", 100)),
            ("  page 100 deep (confidence)", deep_cursor(client, "sort=confidence", 100)),
            ("  filter suggested=virginica (age)", "/review?suggested=virginica"),
            ("  filter suggested=virginica (conf.)", "/review?sort=confidence&suggested=virginica"),
            ("  filter model=iris-v2 (conf.)", "/review?sort=confidence&model=iris-v2"),
        ]
        for name, path in cases:
            print(f"  {name:<40} {timed(page(client, path), runs)}")
    with engine.connect() as conn:
        print(f"  {'queue_stats alone':<40} {timed(lambda: service.queue_stats(conn=conn), runs)}")
        old = select(CASE).where(CASE.c.review_status == "pending").order_by(
            func.coalesce(CASE.c.confidence, -1.0), CASE.c.id).limit(50)
        print(f"  {'(before: coalesce() confidence order)':<40} {timed(lambda: conn.execute(old).all(), runs)}")
    for sort in ("age", "confidence"):
        names = iter(range(10**6))

        def claim(sort: str = sort, names: Iterator[int] = names) -> None:
            with engine.begin() as conn:
                assert service.claim_next(conn=conn, reviewer=f"r{next(names)}", lease_seconds=300, sort=sort)
        print(f"  {'claim_next (' + sort + ', new reviewer each)':<40} {timed(claim, runs)}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; times are per request, in process")
    with tempfile.TemporaryDirectory() as tmp:
        bench(f"sqlite:///{tmp}/bench.db", "SQLite", args.cases, args.runs, Path(tmp))
        if pg := os.environ.get("DECIDER_TEST_POSTGRES_URL"):
            with postgres_database(pg, prefix="decider_bench") as url:
                bench(url, "PostgreSQL", args.cases, args.runs, Path(tmp))


if __name__ == "__main__":
    main()
