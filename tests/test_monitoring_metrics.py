"""/metrics route labels: static files under their mount path, `<unmatched>` only where no route took it."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from helpers import api, settings_for


def requests_by_label(text: str) -> dict[tuple[str, str, str], float]:
    """decider_http_requests_total as {(method, route, status): count}."""
    return {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "decider_http_requests_total"}


def test_static_files_are_labelled_by_their_mount_and_refusals_before_routing_stay_unmatched(tmp_path,
                                                                                             sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        before = requests_by_label(client.get("/metrics").text)
        assert client.get("/static/decider.css").status_code == 200
        assert client.get("/static/no-such-file.css").status_code == 404
        assert client.get("/no/such/page").status_code == 404
        too_big = client.post("/api/v1/cases", content=b"{" + b" " * 10_000_001 + b"}",
                              headers=h | {"content-type": "application/json"})
        assert too_big.status_code == 413
        after = requests_by_label(client.get("/metrics").text)

    def moved(*key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("GET", "/static", "200") == 1 and moved("GET", "/static", "404") == 1
    assert moved("GET", "<unmatched>", "200") == 0
    assert moved("GET", "<unmatched>", "404") == 1  # a path no route matches
    assert moved("POST", "<unmatched>", "413") == 1  # refused by the body limit before routing
    assert not any(route.startswith("/static/") for _, route, _ in after)
