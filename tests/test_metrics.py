"""/metrics: parses with prometheus_client's own parser, and its counters move as cases flow."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from decider.config import load_settings
from helpers import (
    AMBIGUOUS,
    SETOSA,
    api,
    free_port,
    review_headers,
    scrape,
    seed_credentials,
    settings_for,
    submit,
    wait_until_up,
    write_config,
)


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def test_counters_move_as_cases_flow(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url, automation="audit_rate = 1.0")
    with api(settings) as (client, h):
        before = scrape(client.get("/metrics").text)
        sure, unsure = submit(client, h, SETOSA), submit(client, h, AMBIGUOUS)
        client.get(f"/api/v1/cases/{sure['id']}", headers=h)
        client.get("/no/such/page")
        mid = scrape(client.get("/metrics").text)
        for case, label in ((sure, "virginica"), (unsure, "versicolor")):  # overturn the audit; decide
            alice = review_headers(client)
            assert client.post(f"/api/v1/review/cases/{case['id']}/claim", headers=alice).status_code == 200
            client.post(f"/api/v1/review/cases/{case['id']}/resolve", json={"label": label}, headers=alice)
        client.post(f"/api/v1/cases/{sure['id']}/outcome", json={"label": "setosa"}, headers=h)
        response = client.get("/metrics")
        after = scrape(response.text)
    assert response.headers["content-type"].startswith("text/plain")

    def moved(name: str, **labels: str) -> float:
        return value(mid, name, **labels) - value(before, name, **labels)

    assert moved("decider_cases_total", route="auto", decision="setosa", model_version="iris-v1") == 1
    assert moved("decider_cases_total", route="queue", decision="none", model_version="iris-v1") == 1
    assert moved("decider_http_requests_total", method="POST", route="/api/v1/cases", status="201") == 2
    assert moved("decider_http_request_duration_seconds_count", method="POST", route="/api/v1/cases") == 2
    assert moved("decider_http_requests_total", method="GET", route="/api/v1/cases/{case_id}", status="200") == 1
    assert moved("decider_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert not any("/api/v1/cases/" + str(sure["id"]) in dict(labels).get("route", "") for _, labels in after)
    # Read from the database at scrape time: both cases wait (an audit and a queued case), then none.
    assert value(mid, "decider_queue_depth") == 2 and value(mid, "decider_queue_oldest_pending_seconds") > 0
    assert value(after, "decider_queue_depth") == 0 and value(after, "decider_queue_oldest_pending_seconds") == 0
    assert value(after, "decider_reviews_total", kind="audit") == 1
    assert value(after, "decider_reviews_total", kind="decision") == 1
    assert value(after, "decider_audit_overturned_total") == 1
    assert value(after, "decider_outcomes_total", decision="correct") - value(mid, "decider_outcomes_total",
                                                                               decision="correct") == 1
    assert value(after, "decider_database_up") == 1


def test_workers_share_their_counters(tmp_path):
    """With --workers 2 each process counts in its own file; every scrape, whichever worker answers, sums all."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    headers = {"Authorization": f"Bearer {seed_credentials(load_settings(config))}"}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    prom = tmp_path / "prom"
    prom.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    (prom / "counter_999999.db").write_bytes(b"stale")  # from an earlier run: must be cleared
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "decider", "serve", "--config", str(config), "--port", str(port),
                             "--workers", "2"], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, proc, tmp_path / "server.log")
        posted = 0
        # A new connection per request, until both workers have counted some (each writes counter_<pid>.db).
        while posted < 30 or len(list(prom.glob("counter_*.db"))) < 2:
            assert posted < 500, "one worker answered every request"
            assert httpx.post(base + "/api/v1/cases", json={"features": SETOSA}, headers=headers).status_code == 201
            posted += 1
        for _ in range(10):  # whichever worker answers, it reports every worker's counts
            samples = scrape(httpx.get(base + "/metrics").text)
            assert total(samples, "decider_cases_total") == posted
            assert total(samples, "decider_http_requests_total", method="POST", route="/api/v1/cases") == posted
        assert not (prom / "counter_999999.db").exists()
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
