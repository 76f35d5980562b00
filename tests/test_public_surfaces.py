"""What answers without a credential says nothing it should not: /metrics behind its token when one is set,
/readyz in words without paths or values."""

from __future__ import annotations

from helpers import api, settings_for

TOKEN = "a-metrics-token-of-some-length-0123456789"


def test_metrics_need_the_token_when_one_is_set(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, extra=f'[server]\nmetrics_token = "{TOKEN}"\n')) as (client, h):
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers=h).status_code == 401  # a client key is not the metrics token
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200 and "decider_http_requests" in scraped.text


def test_metrics_are_open_without_a_token(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        assert client.get("/metrics").status_code == 200


def test_readiness_names_no_path_or_value(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        client.app.state.runtime.problems["config"] = f"config {tmp_path}/config.toml: automation.level 'x'"
        ready = client.get("/readyz")
        assert ready.status_code == 200  # degraded, not down: it serves on its last good policy
        assert ready.json() == {"status": "degraded", "reasons": ["a config edit was rejected"]}
        assert str(tmp_path) not in ready.text
