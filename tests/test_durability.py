"""Every acknowledged case is stored: `decider serve` killed with SIGKILL while batches and single cases are in
flight loses none of those it answered, on both engines. On SQLite they are still in the WAL when it dies
(db.WAL_CHECKPOINT_PAGES), and the next open recovers them from it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from decider.cases.tables import Case
from decider.db import make_engine
from helpers import free_port, killable_server, seed_credentials, settings_for


def features(i: int) -> dict[str, float]:
    return {"sepal length (cm)": 4.5 + (i % 30) / 10, "petal width (cm)": (i % 25) / 10}


def test_a_kill_9_loses_no_acknowledged_case(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url)
    key = seed_credentials(settings)
    headers = {"Authorization": f"Bearer {key}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    with killable_server(settings.config_path, port) as proc:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for b in range(8):  # ~4,000 WAL pages on SQLite: past SQLite's default checkpoint of 1,000
                cases = [{"features": features(i), "key": f"b{b}-{i}"} for i in range(1000)]
                answer = client.post("/api/v1/batches", json={"cases": cases})
                assert answer.status_code == 200
                acknowledged += [r["case"]["key"] for r in answer.json()["results"] if r["status"] == 201]
        assert len(acknowledged) == 8000

        stop = threading.Event()
        lock = threading.Lock()

        def single(worker: int) -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
                for i in range(100_000):
                    if stop.is_set():
                        return
                    case_key = f"s{worker}-{i}"
                    try:
                        answer = client.post("/api/v1/cases", json={"features": features(i), "key": case_key})
                    except httpx.HTTPError:
                        return  # the server died mid-request: not acknowledged
                    if answer.status_code == 201:
                        with lock:
                            acknowledged.append(case_key)

        threads = [threading.Thread(target=single, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 8200 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # with single cases in flight
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
    assert len(acknowledged) > 8000
    if db_url.startswith("sqlite"):
        # No checkpoint had run: the database file holds the schema only, the 8,000+ cases are in the WAL alone.
        database = Path(settings.database_url.split("///", 1)[1])
        assert database.stat().st_size < 1_000_000 < 4_000_000 < Path(f"{database}-wal").stat().st_size
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        stored = set(conn.execute(select(Case.key)).scalars())
    engine.dispose()
    assert set(acknowledged) <= stored
