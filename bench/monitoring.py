"""How long does the monitoring page take with 1,000,000 cases?

Trains a small model on make_classification data (10 features, 3 classes), fills a database with N cases
scored by it (Core bulk inserts, 10,000 rows a statement) spread over the last `--days` days, so that the
page's default window (seven days) holds every one: a realistic mix of automatic decisions and queued cases,
blind audits at 10%, most queued cases reviewed, outcomes for a third, a few inputs outside the training
range, two model versions, and a shifted tail that the drift figures flag. Then times, through the real app
(FastAPI TestClient, logged in as an admin, template rendered):

- the start of the app (create_app and its lifespan, which starts the background read of the default window),
- the first /monitoring request of the process, made at once (the "computing" page while the cases are read),
- how long after the start the figures were ready (the background first read of every case of the window),
  and the first request then,
- warm requests (the median and the slowest),
- a request after new cases, reviews and outcomes arrived (the cache brought up to date),
- the JSON API, and a `last=N` window.

SQLite always; PostgreSQL too with --postgres URL (a server URL: a scratch database is made and dropped).

    python bench/monitoring.py [--cases 1000000] [--days 7] [--runs 10] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from sklearn.datasets import make_classification
from sqlalchemy import func, insert, select, text, update
from sqlmodel import Session

from decider.auth.service import add_user
from decider.cases.service import CASE, EVENT
from decider.config import load_settings
from decider.db import make_engine, now, upgrade
from decider.monitoring import cache as monitoring_cache
from decider.registry.artifacts import load
from decider.registry.training import Dataset, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import postgres_database  # noqa: E402

FEATURES = [f"x{i}" for i in range(10)]
LABELS = np.array(["a", "b", "c"])
TRAIN_ROWS = 2000
CHUNK = 10_000
PASSWORD = "bench password"


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """One draw of make_classification: the first TRAIN_ROWS rows train the models, the rest arrive live."""
    X, y = make_classification(n + TRAIN_ROWS, len(FEATURES), n_informative=6, n_redundant=2, n_classes=3,
                               class_sep=1.2, flip_y=0.02, random_state=7)
    return np.round(X, 4), LABELS[y]


def models(X: np.ndarray, y: np.ndarray, out: Path) -> list[str]:
    """Two versions, trained on the first and second halves of the training rows."""
    half = TRAIN_ROWS // 2
    ids = []
    for version, rows in ((1, slice(0, half)), (2, slice(half, TRAIN_ROWS))):
        artifact = train(Dataset(X[rows], y[rows], FEATURES, "make_classification"), name="bench",
                         version=version, out_dir=out, estimator="logistic")
        ids.append(artifact.stem)
    return ids


def cases(X: np.ndarray, y: np.ndarray, model_dir: Path, ids: list[str], days: float,
          rng: np.random.Generator) -> Iterator[list[dict]]:
    """Case rows in chunks, oldest first; the newest tenth shifted by 0.8 on two features."""
    n = len(X)
    start = now() - timedelta(days=days)
    step = timedelta(days=days) / n
    X = X.copy()
    X[int(n * 0.9):, :2] += 0.8
    loaded = [load(model_dir, i) for i in ids]
    ranges = {f: (s["min"], s["max"]) for f, s in loaded[0].card["feature_stats"].items()}
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        version = 0 if lo < n * 0.6 else 1  # v1, then v2 for the newest 40%
        model = loaded[version]
        proba = model.predict_proba(X[lo:hi])
        draws = rng.random((hi - lo, 6))
        chunk = []
        for j in range(hi - lo):
            i = lo + j
            at = start + step * i
            p = proba[j]
            k = int(np.argmax(p))
            prediction, confidence = model.labels[k], float(p[k])
            truth = str(y[i])
            features = {f: float(v) for f, v in zip(FEATURES, X[i], strict=True)}
            novelty = [{"kind": "range", "feature": f, "message": f"{f} = {features[f]:g}, trained on "
                        f"{ranges[f][0]:g}–{ranges[f][1]:g}"}
                       for f in FEATURES if not ranges[f][0] <= features[f] <= ranges[f][1]]
            auto = confidence >= 0.9 and not novelty
            audit = auto and draws[j, 0] < 0.1
            reviewed = (audit and draws[j, 1] < 0.9) or (not auto and draws[j, 1] < 0.8)
            label = (truth if draws[j, 2] < 0.95 else prediction) if reviewed else None
            review_at = at + timedelta(minutes=5 + 60 * draws[j, 3]) if reviewed else None
            outcome = truth if draws[j, 4] < 0.33 else None
            decision = prediction if auto else label
            chunk.append({
                "key": f"bench-{i}", "client": "bench", "features": features, "novelty": novelty,
                "model_version": model.id, "model_role": "live",
                "probabilities": {c: float(q) for c, q in zip(model.labels, p, strict=True)},
                "prediction": prediction, "confidence": confidence, "level": "partial", "effective_level": "partial",
                "threshold": 0.9, "policy_version": "bench", "route": "auto" if auto else "queue",
                "show_suggestion": True, "status": "decided" if decision else "pending", "decision": decision,
                "decided_by": "model" if auto else ("bench-reviewer" if label else None),
                "decided_at": at if auto else review_at, "audit": audit, "audit_probability": 0.1 if auto else None,
                "review_status": ("done" if reviewed else "pending") if (audit or not auto) else None,
                "review_label": label, "reviewed_by": "bench-reviewer" if label else None, "reviewed_at": review_at,
                "outcome": outcome, "outcome_at": at + timedelta(hours=6) if outcome else None, "created_at": at,
            })
        yield chunk


def seed(url: str, n: int, days: float, tmp: Path) -> tuple[Path, list[str]]:
    """A migrated database holding n cases, the models that scored them, and a config naming both."""
    model_dir = tmp / "models"
    model_dir.mkdir(exist_ok=True)
    X, y = data(n)
    ids = models(X, y, model_dir)
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":  # a bulk load to throw away: no need to wait for the disk
            conn.exec_driver_sql("PRAGMA synchronous = OFF")
        for chunk in cases(X[TRAIN_ROWS:], y[TRAIN_ROWS:], model_dir, ids, days, np.random.default_rng(1)):
            conn.execute(insert(CASE), chunk)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text('VACUUM ANALYZE "case"' if conn.dialect.name == "postgresql" else "ANALYZE"))
    with Session(engine) as session:
        add_user(session=session, name="bench", password=PASSWORD, role="admin")
        session.commit()
    engine.dispose()
    config = tmp / f"config-{abs(hash(url))}.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[models]\ndir = "{model_dir}"\nlive = "{ids[1]}"\n'
                      '[automation]\nlevel = "partial"\nthreshold = 0.9\naudit_rate = 0.1\n')
    return config, ids


def arrivals(engine, ids: list[str], n: int) -> None:  # type: ignore[no-untyped-def]
    """What happens between two looks at the page: n new cases, and a review and an outcome for n older ones
    (with the case_event rows the service writes)."""
    with engine.begin() as conn:
        newest = conn.execute(select(CASE).order_by(CASE.c.id.desc()).limit(1)).mappings().one()
        fresh = [dict(newest) | {"key": f"late-{time.time_ns()}-{i}", "created_at": now()} for i in range(n)]
        for row in fresh:
            del row["id"]
        conn.execute(insert(CASE), fresh)
        pending = conn.execute(select(CASE.c.id).where(CASE.c.review_status == "pending").limit(n)).scalars().all()
        at = now()
        for case_id in pending:
            conn.execute(update(CASE).where(CASE.c.id == case_id).values(
                review_status="done", review_label="a", reviewed_by="bench", reviewed_at=at))
            conn.execute(insert(EVENT).values(case_id=case_id, kind="audited", actor="bench", at=at))
        open_ = conn.execute(select(CASE.c.id).where(CASE.c.outcome.is_(None)).limit(n)).scalars().all()
        for case_id in open_:
            conn.execute(update(CASE).where(CASE.c.id == case_id).values(outcome="b", outcome_at=at))
            conn.execute(insert(EVENT).values(case_id=case_id, kind="outcome", actor="bench", at=at))


def once(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def page(client: TestClient, path: str) -> Callable[[], None]:
    def get() -> None:
        response = client.get(path)
        assert response.status_code == 200 and "monitoring-figures" in response.text, response.text[:300]
    return get


def bench(url: str, label: str, n: int, days: float, runs: int, tmp: Path) -> None:
    from decider.app import create_app

    t = time.perf_counter()
    config, ids = seed(url, n, days, tmp)
    print(f"\n== {label}: {n:,} cases over {days:g} days seeded in {time.perf_counter() - t:.1f} s")
    started = time.perf_counter()
    app = create_app(load_settings(config))
    engine = app.state.runtime.engine
    client = TestClient(app)
    with client:
        up = time.perf_counter() - started
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]
        client.post("/login", data={"name": "bench", "password": PASSWORD, "csrf": token})
        t = time.perf_counter()
        response = client.get("/monitoring")
        first = time.perf_counter() - t
        computing = 'id="computing"' in response.text
        build = monitoring_cache._CACHES[engine].build
        assert build is not None
        during = []  # another page meanwhile: what the read in the background costs the rest of the process
        while not build.done.is_set() and len(during) < runs:
            during.append(once(lambda: client.get("/login").raise_for_status()))
        assert build.done.wait(3600) and build.error is None, build.error
        calm = [once(lambda: client.get("/login").raise_for_status()) for _ in range(runs)]
        ready = (build.finished - build.started).total_seconds() if build.finished else float("nan")
        get = page(client, "/monitoring")
        after_read = once(get)
        fig = client.get("/monitoring", params={"format": "json"}).json()
        w = fig["window"]
        print(f"  window: {w['cases']:,} cases, {len(fig['timeline'])} buckets of {w['bucket']}, "
              f"{len(fig['flags'])} flags")
        print(f"  app start (create_app + lifespan)       {up * 1000:8.0f} ms")
        print(f"  /monitoring, first request after start {first * 1000:8.0f} ms "
              f"({'the computing page' if computing else 'figures'})")
        print(f"  figures ready, background first read    {ready * 1000:8.0f} ms ({build.read:,} cases, "
              f"{build.read / ready:,.0f} cases/s)")
        print(f"  /monitoring, first request after it     {after_read * 1000:8.0f} ms")
        if during:
            print(f"  /login while the read runs (median)     {statistics.median(during) * 1000:8.0f} ms; "
                  f"after it {statistics.median(calm) * 1000:.0f} ms")
        warm = sorted(once(get) for _ in range(runs))
        print(f"  /monitoring, warm (median, max) {statistics.median(warm) * 1000:8.0f} ms {warm[-1] * 1000:8.0f} ms")
        after = []
        for _ in range(min(runs, 5)):
            arrivals(engine, ids, 50)
            after.append(once(get))
        print(f"  after 50 new cases, 50 reviews and 50 outcomes (median) {statistics.median(after) * 1000:6.0f} ms")
        api = sorted(once(lambda: client.get("/monitoring", params={"format": "json"}).raise_for_status())
                     for _ in range(runs))
        print(f"  JSON (median)                   {statistics.median(api) * 1000:8.0f} ms")
        since = (now() - timedelta(days=2, minutes=17)).replace(tzinfo=None).isoformat(timespec="minutes")
        odd = sorted(once(page(client, f"/monitoring?since={since}")) for _ in range(runs))
        print(f"  since=two days ago at :{since[-2:]} (median) {statistics.median(odd) * 1000:8.0f} ms")
        last = sorted(once(page(client, "/monitoring?last=100000")) for _ in range(runs))
        print(f"  last=100000 (median)            {statistics.median(last) * 1000:8.0f} ms")
        with engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(CASE)).scalar_one()
        print(f"  cases in the database now: {total:,}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0, help="the cases are spread over this many days")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--postgres", metavar="URL", help="also on this PostgreSQL server (a scratch database)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; times are per request, in process, "
          f"started {datetime.now():%Y-%m-%d %H:%M}")
    with tempfile.TemporaryDirectory() as tmp:
        bench(f"sqlite:///{tmp}/bench.db", "SQLite", args.cases, args.days, args.runs, Path(tmp))
        if args.postgres:
            with postgres_database(args.postgres, prefix="decider_bench") as url:
                bench(url, "PostgreSQL", args.cases, args.days, args.runs, Path(tmp))


if __name__ == "__main__":
    main()
