"""Eight reviewers work one queue at once over the API of a real server: every case is decided once."""

from __future__ import annotations

import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from decider.cases.service import CASE, EVENT
from decider.config import load_settings
from decider.db import make_engine
from helpers import add_reviewers, seed_credentials, server, write_config

pytestmark = pytest.mark.slow
CASES, REVIEWERS = 500, 8
LABELS = ["setosa", "versicolor", "virginica"]


def flower(rng: random.Random) -> dict[str, float]:
    return {"sepal length (cm)": round(rng.uniform(4.5, 7.5), 1), "petal width (cm)": round(rng.uniform(0.1, 2.4), 1)}


def submit_all(base: str, headers: dict[str, str]) -> list[int]:
    rng = random.Random(3)
    bodies = [{"features": flower(rng)} for _ in range(CASES)]

    def send(chunk: list[dict]) -> list[int]:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            return [http.post("/api/v1/cases", json=b).raise_for_status().json()["id"] for b in chunk]

    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(send, [bodies[i::4] for i in range(4)]), [])


def review(base: str, headers: dict[str, str], name: str) -> dict[str, list]:
    """Claim and resolve until the queue is empty; skip now and then, and try to decide twice."""
    rng = random.Random(name)
    done, refused, statuses = [], [], Counter()
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        while True:
            sort = rng.choice(["age", "confidence"])
            claim = http.post("/api/v1/review/claim", json={"sort": sort})
            statuses["claim", claim.status_code] += 1
            if claim.status_code == 204:
                return {"done": done, "refused": refused, "statuses": statuses}
            case_id = claim.json()["id"]
            if rng.random() < 0.1:  # skip: back to the queue for anyone
                released = http.post(f"/api/v1/review/cases/{case_id}/release")
                statuses["release", released.status_code] += 1
                continue
            body = {"label": rng.choice(LABELS)}
            resolved = http.post(f"/api/v1/review/cases/{case_id}/resolve", json=body)
            statuses["resolve", resolved.status_code] += 1
            if resolved.status_code == 200:
                done.append(case_id)
            if rng.random() < 0.1:  # a double click: must be refused, never a second decision
                again = http.post(f"/api/v1/review/cases/{case_id}/resolve", json=body)
                refused.append(again.status_code)


def test_eight_reviewers_decide_every_case_exactly_once(tmp_path, db_url):
    config = write_config(tmp_path, db_url, level="assist")  # assist: every case is queued
    key = seed_credentials(load_settings(config))
    headers = {"Authorization": f"Bearer {key}"}
    people = add_reviewers(load_settings(config), [f"reviewer{n}" for n in range(REVIEWERS)])
    with server(config) as base:
        ids = submit_all(base, headers)
        assert len(set(ids)) == CASES
        started = time.monotonic()
        with ThreadPoolExecutor(REVIEWERS) as pool:
            results = list(pool.map(lambda n: review(base, people[f"reviewer{n}"], f"reviewer{n}"), range(REVIEWERS)))
        elapsed = time.monotonic() - started
    decided = sum((r["done"] for r in results), [])
    statuses = sum((r["statuses"] for r in results), Counter())
    print(f"\n{db_url.split(':')[0]}: {REVIEWERS} reviewers decided {len(decided)} cases in {elapsed:.1f} s; "
          f"responses {dict(statuses)}")
    assert sorted(decided) == sorted(ids)  # every case, and none twice
    # each reviewer's last claim finds the queue empty; nothing a reviewer holds is ever refused; no 5xx
    assert set(statuses) <= {("claim", 200), ("claim", 204), ("release", 204), ("resolve", 200)}
    assert statuses["claim", 204] == REVIEWERS
    assert all(code == 409 for r in results for code in r["refused"])
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(CASE.c.id, CASE.c.status, CASE.c.decided_by, CASE.c.review_status)).all()
        events = dict(conn.execute(select(EVENT.c.case_id, func.count()).where(EVENT.c.kind == "decided")
                                   .group_by(EVENT.c.case_id)).all())
    engine.dispose()
    by_reviewer = {case_id: f"reviewer{n}" for n, r in enumerate(results) for case_id in r["done"]}
    assert len(rows) == CASES
    assert all(r.status == "decided" and r.review_status == "done" for r in rows)
    assert all(r.decided_by == by_reviewer[r.id] for r in rows)
    assert events == dict.fromkeys(ids, 1)
