"""Two `decider serve` processes started separately on one PostgreSQL database, as two hosts behind a load
balancer: they share ingest (every case stored once, keys idempotent across both), the review queue (no
case claimed twice), config reloads and model deployments."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from decider.cases.tables import Case
from decider.config import load_settings
from decider.db import make_engine
from helpers import (
    AMBIGUOUS,
    SETOSA,
    add_reviewers,
    model_versions,
    postgres_database,
    seed_credentials,
    server,
    write_config,
)

PG_URL = os.environ.get("DECIDER_TEST_POSTGRES_URL")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL: set DECIDER_TEST_POSTGRES_URL")]
PERIOD = 0.3  # server.reload_seconds


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 30.0) -> float:
    """Seconds until `predicate()` is true; fails naming `what` after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what}: not seen within {timeout:g} s")


@contextmanager
def two_hosts(tmp_path: Path) -> Iterator[tuple[Path, str, list[str], dict[str, dict[str, str]]]]:
    """A fresh PostgreSQL database and two servers on it, each its own process on its own port:
    (config, client key, [base A, base B], reviewers' headers)."""
    assert PG_URL
    with postgres_database(PG_URL) as url, ExitStack() as stack:
        config = write_config(tmp_path, url, models_dir=model_versions(tmp_path),
                              extra=f"[server]\nreload_seconds = {PERIOD}\n")
        key = seed_credentials(load_settings(config))
        reviewers = add_reviewers(load_settings(config), ["rev1", "rev2", "rev3", "rev4"])
        bases = [stack.enter_context(server(config)) for _ in range(2)]
        assert bases[0] != bases[1]
        yield config, key, bases, reviewers


def post(base: str, key: str, features: dict[str, float], case_key: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"features": features} | ({"key": case_key} if case_key else {})
    return httpx.post(base + "/api/v1/cases", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def stored(config: Path) -> Counter[str]:
    """How many stored cases carry each key."""
    engine = make_engine(load_settings(config).database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Case.key, func.count()).group_by(Case.key)).all()
    engine.dispose()
    return Counter(dict(rows))


def test_two_servers_share_ingest_the_queue_reloads_and_deployments(tmp_path):
    with two_hosts(tmp_path) as (config, key, bases, reviewers):
        # Ingest: the same 40 keys sent to both servers at once, singly and in batches; each stored once.
        answers: dict[str, list[tuple[int, int]]] = {f"k{i}": [] for i in range(40)}
        failures: list[str] = []

        def send(base: str) -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
                for i in range(20):  # singles
                    r = http.post("/api/v1/cases", json={"features": SETOSA if i % 2 else AMBIGUOUS, "key": f"k{i}"})
                    if r.status_code not in (200, 201):
                        failures.append(r.text)
                    else:
                        answers[f"k{i}"].append((r.status_code, r.json()["id"]))
                cases = [{"features": SETOSA if i % 2 else AMBIGUOUS, "key": f"k{i}"} for i in range(20, 40)]
                r = http.post("/api/v1/batches", json={"cases": cases})
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    for i, result in zip(range(20, 40), r.json()["results"], strict=True):
                        answers[f"k{i}"].append((result["status"], result["case"]["id"]))

        threads = [threading.Thread(target=send, args=(base,)) for base in bases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert failures == []
        for case_key, got in answers.items():
            # One server created the case, the other found it: one id, one 201, one 200.
            assert sorted(status for status, _ in got) == [200, 201], (case_key, got)
            assert len({case_id for _, case_id in got}) == 1, (case_key, got)
        assert stored(config) == Counter(dict.fromkeys(answers, 1))
        # Either server finds a key the other stored; other features under it are a conflict on both.
        for base in bases:
            assert post(base, key, SETOSA, "k1").json()["id"] == answers["k1"][0][1]
            assert post(base, key, AMBIGUOUS, "k1").status_code == 409

        # The queue: a claim made through one server holds on the other.
        queued = [post(bases[0], key, AMBIGUOUS).json()["id"] for _ in range(10)]
        queued += [post(bases[1], key, AMBIGUOUS).json()["id"] for _ in range(10)]
        names = list(reviewers)
        held = httpx.post(f"{bases[0]}/api/v1/review/cases/{queued[0]}/claim", headers=reviewers[names[0]])
        assert held.status_code == 200 and held.json()["claimed_by"] == names[0]
        taken = httpx.post(f"{bases[1]}/api/v1/review/cases/{queued[0]}/claim", headers=reviewers[names[1]])
        assert taken.status_code == 409, taken.text
        # Four reviewers, two on each server, work the queue at once: every case is resolved exactly once.
        resolved: list[tuple[str, int]] = []
        errors: list[str] = []

        def work(base: str, name: str) -> None:
            with httpx.Client(base_url=base, headers=reviewers[name], timeout=30) as http:
                while True:
                    r = http.post("/api/v1/review/claim")
                    if r.status_code == 204:
                        return
                    if r.status_code != 200:
                        errors.append(r.text)
                        return
                    case_id = r.json()["id"]
                    done = http.post(f"/api/v1/review/cases/{case_id}/resolve", json={"label": "versicolor"})
                    if done.status_code != 200:
                        errors.append(done.text)
                        return
                    resolved.append((name, case_id))

        workers = [threading.Thread(target=work, args=(bases[i % 2], name)) for i, name in enumerate(names)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(120)
        assert errors == []
        ids = [case_id for _, case_id in resolved]
        assert len(ids) == len(set(ids)), "a case was resolved twice"
        waiting = {case_id for _, got in answers.items() for status, case_id in got if status == 201}
        assert set(queued) <= set(ids) and set(ids) <= set(queued) | waiting
        assert {name for name, _ in resolved} >= {names[0], names[1]}  # both servers handed out work

        # Config reloads: one edit of config.toml, followed by both servers within a few periods.
        assert all(post(base, key, SETOSA).json()["route"] == "auto" for base in bases)
        config.write_text(config.read_text().replace('level = "partial"', 'level = "assist"'))
        for base in bases:
            took = wait_for(f"the edit on {base}", lambda b=base: post(b, key, SETOSA).json()["route"] == "queue")
            print(f"\n{base}: config edit in force after {took:.2f} s (period {PERIOD} s)")
        assert all(post(base, key, SETOSA).json()["level"] == "assist" for base in bases for _ in range(3))

        # Deployments: `decider models promote` is followed by both servers.
        promote = subprocess.run([sys.executable, "-m", "decider", "models", "promote", "iris-v2", "--config",
                                  str(config)], capture_output=True, text=True, timeout=120)
        assert promote.returncode == 0, promote.stderr
        for base in bases:
            took = wait_for(f"iris-v2 on {base}",
                            lambda b=base: post(b, key, SETOSA).json()["model_version"] == "iris-v2")
            print(f"{base}: promote followed after {took:.2f} s")
        assert all(post(base, key, SETOSA).json()["model_version"] == "iris-v2" for base in bases for _ in range(3))
