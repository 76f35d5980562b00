"""How fast is the case page with its explanation and precedents, at 100,000 cases decided by people?

For each model (the bundled iris-v1, and 20-feature make_classification models trained here with `decider
train`'s logistic and random-forest estimators), seeds 100,000 person-decided cases and a few hundred pending
ones through the batch path (`score_batch` then `store_batch`, 1,000 cases per transaction), then times,
through the real app (FastAPI TestClient, logged in, templates rendered), the case page of distinct pending
cases (each opened once, so no explanation comes from the cache), and apart: the explanation, the precedent
lookup and the index build.

    python bench/casepage.py [--cases 100000] [--pages 200]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from sklearn.datasets import make_classification
from sqlmodel import Session

from decider import precedent
from decider.app import create_app
from decider.auth.service import add_user
from decider.cases.service import Submission, get_case, score_batch, store_batch
from decider.config import load_settings
from decider.db import make_engine, now, upgrade
from decider.registry.training import Dataset, train
from decider.review import insight, service
from decider.threads import one_thread

ROOT = Path(__file__).resolve().parents[1]
REVIEWERS = ["ana", "ben", "chloe", "dev"]


def iris_records(n: int, rng: np.random.Generator) -> list[dict[str, float]]:
    from sklearn.datasets import load_iris

    X = load_iris().data
    rows = X[rng.integers(len(X), size=n)] + rng.normal(scale=0.1, size=(n, 4))
    return [{"sepal length (cm)": round(a, 2), "sepal width (cm)": round(b, 2), "petal length (cm)": round(c, 2),
             "petal width (cm)": round(d, 2)} for a, b, c, d in rows.tolist()]


def synthetic(n_features: int = 20, seed: int = 0) -> tuple[Dataset, Callable[[int, np.random.Generator], list[dict]]]:
    """A 3-class make_classification table, and a source of more records like it."""
    X, y = make_classification(n_samples=20_000 + 1_500, n_features=n_features, n_informative=8, n_redundant=4,
                               n_classes=3, class_sep=0.8, random_state=seed)
    names = [f"f{j:02d}" for j in range(n_features)]
    data = Dataset(X[:1_500], np.asarray(["low", "mid", "high"])[y[:1_500]], names, "make_classification")
    pool = X[1_500:]

    def records(n: int, rng: np.random.Generator) -> list[dict]:
        rows = pool[rng.integers(len(pool), size=n)] + rng.normal(scale=0.05, size=(n, n_features))
        return [dict(zip(names, map(float, r), strict=True)) for r in rows]
    return data, records


def seed(client: TestClient, records: list[dict], pending: int) -> list[int]:
    """Store `records` scored by the live model; all but the last `pending` decided by a reviewer."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    labels = runtime.deployment.live.labels
    pending_ids: list[int] = []
    at = now()
    for start in range(0, len(records), 1_000):
        chunk = records[start:start + 1_000]
        rows = score_batch(runtime, [Submission("bench", f, f"bench-{start + i}") for i, f in enumerate(chunk)])
        for i, row in enumerate(rows):
            if start + i >= len(records) - pending:
                row |= {"status": "pending", "decision": None, "decided_by": None, "decided_at": None,
                        "route": "queue", "review_status": "pending", "review_label": None, "reviewed_by": None,
                        "reviewed_at": None, "show_suggestion": True, "audit": False}
                continue
            who = REVIEWERS[(start + i) % len(REVIEWERS)]
            label = row["prediction"] if (start + i) % 5 else labels[(start + i) % len(labels)]
            row |= {"status": "decided", "decision": label, "decided_by": who, "decided_at": at, "route": "queue",
                    "review_status": "done", "review_label": label, "reviewed_by": who, "reviewed_at": at,
                    "audit": False}
        with runtime.engine.begin() as conn:
            stored = store_batch(conn, rows)
        pending_ids += [case["id"] for case, _ in stored if case["status"] == "pending"]
    return pending_ids


def pct(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"p50 {statistics.median(ms):7.1f} ms   p95 {ms[max(0, int(len(ms) * 0.95) - 1)]:7.1f} ms   " \
           f"max {ms[-1]:7.1f} ms"


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def bench(name: str, models_dir: Path, live: str, records: list[dict], pages: int, tmp: Path) -> None:
    url = f"sqlite:///{tmp}/{name}.db"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        add_user(session=session, name="bench", password="bench password", role="reviewer")
        session.commit()
    engine.dispose()
    config = tmp / f"{name}.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[models]\ndir = "{models_dir}"\nlive = "{live}"\n'
                      '[automation]\nlevel = "assist"\n')
    seeding = create_app(load_settings(config))
    with TestClient(seeding) as client:
        model = seeding.state.runtime.deployment.live
        t = time.perf_counter()
        pending = seed(client, records, pages * 2)
        decided = len(records) - len(pending)
        print(f"\n== {name}: {model.id}, {len(model.features)} features, {model.card['estimator'].split(':')[0]}; "
              f"{decided:,} person-decided cases seeded in {time.perf_counter() - t:.1f} s")
    seeding.state.runtime.engine.dispose()
    # A server started on the seeded database: a bulk load writes no history events, so only a start (or the
    # full rebuild every precedent.FULL_SECONDS) puts those cases in the index.
    app = create_app(load_settings(config))
    with TestClient(app) as client:
        runtime = app.state.runtime
        builds = [timed(lambda: precedent.load_index(runtime.engine, model)) for _ in range(3)]
        print(f"  {'precedent index build (all decided)':<38} {pct(builds)}")
        insight.refresh_precedents(runtime)  # as the background tick does at start, before the first page
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]  # type: ignore[index]
        client.post("/login", data={"name": "bench", "password": "bench password", "csrf": token})
        with runtime.engine.connect() as conn:
            cases = [get_case(conn=conn, case_id=i) for i in pending[pages:]]
        alone = [timed(lambda c=c: insight.explanation(runtime, c)) for c in cases]
        print(f"  {'explanation alone':<38} {pct(alone)}   {insight.explanation(runtime, cases[-1])['chains']} chains")
        print(f"  {'precedents alone (5 nearest)':<38} "
              f"{pct([timed(lambda c=c: insight.precedents(runtime, c)) for c in cases])}")

        def page(case_id: int) -> None:
            response = client.get(f"/review/cases/{case_id}")
            assert response.status_code == 200 and 'id="explanation"' in response.text \
                and 'id="precedent-table"' in response.text, response.text[response.text.find("<main"):][:1500]
        page(pending[0])  # warm: template compilation
        cold = [timed(lambda i=i: page(i)) for i in pending[1:pages]]
        print(f"  {'case page, cold (each case once)':<38} {pct(cold)}")
        print(f"  {'case page, reloaded':<38} {pct([timed(lambda i=i: page(i)) for i in pending[1:pages]])}")
        holder = precedent.Precedents()
        holder.current(runtime.engine, model)
        looks = []
        for case_id in pending[1:pages]:  # each opened above, so claimed by "bench": decide it, then look
            with runtime.engine.begin() as conn:
                service.resolve(conn=conn, case_id=case_id, reviewer="bench", label=model.labels[0],
                                labels=model.labels)
            assert holder.index is not None
            holder.index = replace(holder.index, built_at=0.0)  # due now
            looks.append(timed(lambda: holder.refresh(runtime.engine, model)))
        assert holder.index is not None and len(holder.index) == decided + pages - 1
        print(f"  {'index refresh after one more decision':<38} {pct(looks)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"times per request, in process, SQLite")
    rng = np.random.default_rng(0)
    n = args.cases + args.pages * 2
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bench("iris", ROOT / "models", "iris-v1", iris_records(n, rng), args.pages, tmp)
        data, records = synthetic()
        models = tmp / "models"
        models.mkdir()
        for version, estimator in ((1, "logistic"), (2, "random_forest"), (3, "hist_gradient_boosting")):
            with one_thread():  # boosting's OpenMP threads spin on a busy machine: training took minutes
                train(data, name="mc", version=version, out_dir=models, estimator=estimator, seed=0)
            bench(f"mc-{estimator}", models, f"mc-v{version}", records(n, rng), args.pages, tmp)


if __name__ == "__main__":
    main()
