"""`/readyz` for a load balancer: a rejected config edit leaves the process ready (200, "degraded", reported
to admins, on the admin pages and in /metrics); only a process that cannot serve (no database) is 503."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

from decider.automation.reload import Watcher
from decider.registry import deploy
from helpers import AMBIGUOUS, api, review_headers, settings_for, submit
from review_helpers import logged_in


def test_a_bad_config_edit_leaves_the_process_ready_and_says_so(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url)
    with api(settings) as (client, h):
        runtime = client.app.state.runtime
        watcher = Watcher(runtime, settings.config_path, on_config=[deploy.refresh])
        text_before = settings.config_path.read_text()
        settings.config_path.write_text(text_before.replace('level = "partial"', 'level = "sometimes"'))
        os.utime(settings.config_path, (1, 1))  # an old stamp: no wait for the file to settle
        watcher.check()
        assert "automation.level" in runtime.problems["config"]

        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "degraded", "reasons": ["a config edit was rejected"]}
        assert str(tmp_path) not in ready.text and "sometimes" not in ready.text  # public: no path, no value
        admin = client.get("/readyz", headers=review_headers(client, "root")).json()
        assert "automation.level" in admin["details"]["config"] and "sometimes" in admin["details"]["config"]
        reviewer = client.get("/readyz", headers=review_headers(client, "alice")).json()
        assert "details" not in reviewer  # only an admin's token sees the details
        assert "decider_config_rejected 1.0" in client.get("/metrics").text
        assert submit(client, h, AMBIGUOUS)["route"] == "queue"  # still serving, on the last good policy

        logged_in(client, "root")
        for page in ("/admin/models", "/admin/users"):
            assert 'id="config-problem"' in client.get(page).text, page

        settings.config_path.write_text(text_before)
        os.utime(settings.config_path, (2, 2))
        watcher.check()
        assert client.get("/readyz").json() == {"status": "ok", "reasons": []}
        assert "decider_config_rejected 0.0" in client.get("/metrics").text


def test_not_ready_when_the_database_is_unreachable(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        runtime = client.app.state.runtime
        served = runtime.engine
        # Nothing listens on port 9: the connection is refused, as when the database server is down.
        runtime.engine = create_engine("postgresql+psycopg://decider@127.0.0.1:9/decider",
                                       connect_args={"connect_timeout": 2})
        try:
            gone = client.get("/readyz")
            assert gone.status_code == 503
            assert gone.json() == {"status": "not ready", "reasons": ["database unavailable"]}
            assert client.head("/readyz").status_code == 503
        finally:
            runtime.engine.dispose()
            runtime.engine = served


@pytest.mark.skipif(not os.environ.get("DECIDER_TEST_POSTGRES_URL"), reason="needs PostgreSQL")
def test_not_ready_when_the_postgres_database_is_dropped(tmp_path):
    from helpers import postgres_database

    admin_url = os.environ["DECIDER_TEST_POSTGRES_URL"]
    with postgres_database(admin_url) as url, api(settings_for(tmp_path, url)) as (client, _):
        assert client.get("/readyz").status_code == 200
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()
        gone = client.get("/readyz")
        assert gone.status_code == 503 and gone.json()["reasons"] == ["database unavailable"]
