"""Live reload against a real `decider serve` process whose config file is edited under it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from decider.config import load_settings
from helpers import AMBIGUOUS, SETOSA, review_headers, seed_credentials, server, write_config

PERIOD = 0.25  # server.reload_seconds in these tests
DEADLINE = 10.0  # generous: the promise is "within a few seconds"; latencies seen are printed


def wait_for(what: str, check: Callable[[], Any], deadline: float = DEADLINE) -> float:
    """Poll `check` until it is truthy; return the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > deadline:
            raise AssertionError(f"not within {deadline} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def route_of(base: str, headers: dict[str, str], features: dict[str, float]) -> str:
    response = httpx.post(base + "/api/v1/cases", json={"features": features}, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["route"]


def edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def start(tmp_path: Path, url: str) -> tuple[Path, dict[str, str]]:
    config = write_config(tmp_path, url, extra=f"[server]\nreload_seconds = {PERIOD}")
    key = seed_credentials(load_settings(config))
    return config, {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_edits_reach_a_running_server_and_bad_ones_are_refused(tmp_path, sqlite_url):
    config, h = start(tmp_path, sqlite_url)
    admin = review_headers(load_settings(config), "root")
    with server(config) as base:
        assert route_of(base, h, AMBIGUOUS) == "queue"  # versicolor at ~0.65 < 0.9
        start_version = httpx.get(base + "/api/v1/policy", headers=admin).json()["version"]

        edit(config, "threshold = 0.9", "threshold = 0.9\nclass_thresholds = { versicolor = 0.6 }")
        took = wait_for("the lower versicolor threshold", lambda: route_of(base, h, AMBIGUOUS) == "auto")
        print(f"valid edit in force after {took:.2f} s (period {PERIOD} s)")
        loosened = httpx.get(base + "/api/v1/policy", headers=admin).json()

        edit(config, 'level = "partial"', 'level = "sometimes"')
        took = wait_for("/readyz reporting the bad edit",
                        lambda: httpx.get(base + "/readyz").json()["status"] == "degraded")
        print(f"invalid edit reported after {took:.2f} s")
        ready = httpx.get(base + "/readyz")  # still ready: the process serves on its last good policy
        assert ready.status_code == 200
        assert ready.json() == {"status": "degraded", "reasons": ["a config edit was rejected"]}
        assert str(tmp_path) not in ready.text and "sometimes" not in ready.text  # public: no path, no value
        for _ in range(5):  # routing as before the bad edit
            assert route_of(base, h, AMBIGUOUS) == "auto"
        now = httpx.get(base + "/api/v1/policy", headers=admin).json()
        assert now["version"] == loosened["version"] and "automation.level" in now["rejected_edit"]
        log = (tmp_path / f"server-{base.rsplit(':', 1)[1]}.log").read_text()
        assert "rejected" in log and "automation.level" in log

        edit(config, 'level = "sometimes"', 'level = "assist"')
        took = wait_for("the fixed edit", lambda: httpx.get(base + "/readyz").json()["status"] == "ok")
        print(f"fixed edit accepted after {took:.2f} s")
        assert route_of(base, h, SETOSA) == "queue" and route_of(base, h, AMBIGUOUS) == "queue"
        policy = httpx.get(base + "/api/v1/policy", headers=admin).json()
        assert policy["rejected_edit"] is None and policy["content"]["level"] == "assist"
        assert [c["version"] for c in policy["history"]] == [policy["version"], loosened["version"], start_version]
        assert [c["source"] for c in policy["history"]] == ["config", "config", "start"]
        guard = policy["history"][1]["replay"]  # lowering a threshold shows the replay figures
        assert guard["reasons"] == ["threshold for versicolor 0.9 -> 0.6"]
        assert guard["old"]["auto"] < guard["new"]["auto"]


@pytest.mark.slow
def test_every_worker_process_follows_the_edit(tmp_path, db_url):
    config, h = start(tmp_path, db_url)
    admin = review_headers(load_settings(config), "root")
    with server(config, args=("--workers", "2")) as base:
        log = tmp_path / f"server-{base.rsplit(':', 1)[1]}.log"
        wait_for("both workers up", lambda: log.read_text().count("Application startup complete") == 2, 60)
        assert route_of(base, h, AMBIGUOUS) == "queue"
        edit(config, 'level = "partial"', 'level = "full"')
        took = wait_for("full automation", lambda: route_of(base, h, AMBIGUOUS) == "auto")
        time.sleep(2 * PERIOD)  # one more period: every worker has looked at the file by now
        # Each request on a new connection, so the kernel spreads them over both workers.
        assert all(route_of(base, h, AMBIGUOUS) == "auto" for _ in range(40))
        print(f"2 workers: full automation after {took:.2f} s")
        assert log.read_text().count("now in force") == 2  # each worker put the edit in force itself
        history = httpx.get(base + "/api/v1/policy", headers=admin).json()["history"]
        assert [c["source"] for c in history] == ["config", "start"]  # once, however many workers saw it
        assert history[0]["content"]["level"] == "full" and history[0]["replay"]["reasons"] == [
            "level partial -> full"]
