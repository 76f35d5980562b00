"""Policy history, `GET /api/v1/policy`, the admin page, and the guard's replay when automation loosens."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from decider.automation import history
from decider.automation.reload import Watcher
from decider.db import make_engine
from decider.policy import Level, Policy, loosenings
from helpers import AMBIGUOUS, PASSWORD, SETOSA, api, review_headers, settings_for, submit


def login(client: TestClient, name: str) -> None:
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    response = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf, "next": "/review"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


def edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def wait_until(check, deadline: float = 10.0):  # type: ignore[no-untyped-def]
    """The server's own watcher runs every reload_seconds: wait for it, up to a deadline."""
    end = time.monotonic() + deadline
    while not (result := check()):
        assert time.monotonic() < end, "the watcher did not get there in time"
        time.sleep(0.05)
    return result


def test_loosenings_name_what_hands_the_model_more_cases():
    base = Policy(level=Level.PARTIAL, threshold=0.9, class_thresholds={"virginica": 0.95}, rollout_percent=50)
    assert loosenings(base, base) == []
    assert loosenings(base, Policy(level=Level.FULL, threshold=0.9, class_thresholds={"virginica": 0.95},
                                   rollout_percent=50)) == ["level partial -> full"]
    lower = Policy(level=Level.PARTIAL, threshold=0.9, rollout_percent=80)  # virginica falls back to 0.9
    assert loosenings(base, lower) == ["threshold for virginica 0.95 -> 0.9", "rollout_percent 50 -> 80"]
    assert loosenings(base, Policy(level=Level.ASSIST)) == []  # tighter
    assert loosenings(Policy(level=Level.SHADOW), Policy(level=Level.ASSIST)) == []  # people still decide
    assert Policy.from_dict(base.as_dict()) == base


def test_policy_api_needs_a_key_and_shows_current_and_history(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url, extra="[server]\nreload_seconds = 0.1")
    with api(settings) as (client, h):
        assert client.get("/api/v1/policy").status_code == 401
        admin = review_headers(client, "root")
        assert client.get("/api/v1/policy", headers=h).status_code == 403  # a client key reads no policy
        wait_until(lambda: client.get("/api/v1/policy", headers=admin).json()["history"])
        body = client.get("/api/v1/policy", headers=admin).json()
        runtime = client.app.state.runtime
        assert body["version"] == runtime.policy.version and body["content"]["level"] == "partial"
        assert body["rejected_edit"] is None
        assert [(c["version"], c["source"]) for c in body["history"]] == [(runtime.policy.version, "start")]
        # Every case records the version that routed it.
        assert submit(client, h, SETOSA)["policy_version"] == runtime.policy.version

        edit(settings.config_path, 'level = "partial"', 'level = "human_only"')
        wait_until(lambda: len(client.get("/api/v1/policy", headers=admin).json()["history"]) == 2)
        body = client.get("/api/v1/policy", headers=admin).json()
        assert [c["content"]["level"] for c in body["history"]] == ["human_only", "partial"]
        assert body["history"][0]["replay"] is None  # tighter: nothing to guard
        assert submit(client, h, SETOSA)["policy_version"] == body["version"]


def test_admin_page_shows_policy_history_and_a_rejected_edit(tmp_path, sqlite_url):
    settings = settings_for(tmp_path, sqlite_url, extra="[server]\nreload_seconds = 0.1")
    with api(settings) as (client, h):
        login(client, "alice")
        assert client.get("/admin/policy").status_code == 403
        login(client, "root")
        page = wait_until(lambda: "Nothing stored yet" not in (p := client.get("/admin/policy").text) and p)
        assert client.app.state.runtime.policy.version in page and "partial" in page
        edit(settings.config_path, "threshold = 0.9", "threshold = 9")
        page = wait_until(lambda: 'id="rejected-edit"' in (p := client.get("/admin/policy").text) and p)
        assert "automation.threshold" in page and "less than or equal to 1" in page
        edit(settings.config_path, "threshold = 9", "threshold = 0.5")
        page = wait_until(lambda: "Replayed on the last" in (p := client.get("/admin/policy").text) and p)
        assert 'id="rejected-edit"' not in page and "threshold 0.9 -&gt; 0.5" in page


def test_guard_replays_old_and_new_on_recent_labelled_cases(tmp_path, db_url):
    """Under partial at 0.9: 3 setosa decided by the model; 4 ambiguous (versicolor ~0.65) queued and
    labelled by people, one of them virginica. Moving to full would auto-decide all 7, and be wrong
    on 1 of the 4 labelled: 25%, Wilson 95% CI 4.6%-69.9%."""
    settings = settings_for(tmp_path, db_url)
    with api(settings) as (client, h):
        runtime = client.app.state.runtime
        for _ in range(3):
            assert submit(client, h, SETOSA)["route"] == "auto"
        queued = [submit(client, h, AMBIGUOUS)["id"] for _ in range(4)]
        for case_id, label in zip(queued, ["versicolor", "versicolor", "virginica", "versicolor"], strict=True):
            client.post(f"/api/v1/review/cases/{case_id}/claim", headers=review_headers(client))
            done = client.post(f"/api/v1/review/cases/{case_id}/resolve",
                               json={"label": label}, headers=review_headers(client))
            assert done.status_code == 200, done.text
    # The server has stopped (and its watcher with it): from here this test runs the watcher's rounds.
    runtime.engine = make_engine(settings.database_url)
    watcher = Watcher(runtime, settings.config_path)
    watcher.round()
    edit(settings.config_path, 'level = "partial"', 'level = "full"')
    watcher.round()
    with runtime.engine.connect() as conn:
        replay = history.latest(conn=conn)["replay"]  # type: ignore[index]
    assert replay["reasons"] == ["level partial -> full"] and replay["cases"] == 7
    old, new = replay["old"], replay["new"]
    assert (old["auto"], old["queued"], old["labelled_auto"], old["error_rate"]) == (3, 4, 0, None)
    assert (new["auto"], new["queued"], new["labelled_auto"], new["errors"]) == (7, 0, 4, 1)
    assert new["error_ci95"] == pytest.approx([0.0456, 0.6994], abs=1e-4)
    # Corrected for how labels were gathered: the 4 queued cases count whole (1 wrong); the 3 the model
    # decided at audit rate 0 were never checked, so each could be wrong: between 1/7 and 4/7.
    assert new["corrected_error"] == pytest.approx({"error": 0.25, "low": 1 / 7, "high": 4 / 7, "labelled": 4,
                                                    "cases": 7})
    assert old["corrected_error"]["error"] is None and old["corrected_error"]["high"] == 1.0
    runtime.engine.dispose()
