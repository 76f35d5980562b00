"""POST/GET /api/v1/cases: routing at each level, thresholds, bad input, keys and pagination."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from decider.cases.tables import Case
from helpers import AMBIGUOUS, SETOSA, api, settings_for, submit


def count_cases(client) -> int:  # type: ignore[no-untyped-def]
    with client.app.state.runtime.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Case)).scalar_one()


def test_partial_decides_confident_and_queues_ambiguous(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        sure = submit(client, h, SETOSA)
        assert (sure["status"], sure["route"], sure["decision"], sure["decided_by"]) == (
            "decided", "auto", "setosa", "model")
        assert set(sure["probabilities"]) == {"setosa", "versicolor", "virginica"}
        assert sure["confidence"] == pytest.approx(max(sure["probabilities"].values()))
        assert sure["model_version"] == "iris-v1"
        unsure = submit(client, h, AMBIGUOUS)
        assert (unsure["status"], unsure["route"], unsure["decision"]) == ("pending", "queue", None)
        assert unsure["prediction"] == "versicolor" and unsure["confidence"] < 0.9
        got = client.get(f"/api/v1/cases/{unsure['id']}", headers=h).json()
        assert got["status"] == "pending" and got["id"] == unsure["id"]


@pytest.mark.parametrize(
    ("level", "route", "model_called", "shown"),
    [
        ("human_only", "queue", False, False),
        ("shadow", "queue", True, False),
        ("assist", "queue", True, True),
        ("full", "auto", True, True),
    ],
)
def test_each_level_routes_as_documented(tmp_path, sqlite_url, level, route, model_called, shown):
    with api(settings_for(tmp_path, sqlite_url, level=level)) as (client, h):
        for features in (SETOSA, AMBIGUOUS):
            case = submit(client, h, features)
            assert case["route"] == route and case["level"] == level
            assert (case["probabilities"] is not None) == shown
        with client.app.state.runtime.engine.connect() as conn:
            stored = conn.execute(select(Case.model_version, Case.probabilities)).all()
        assert all((row.model_version is not None) == model_called for row in stored)
        assert all((row.probabilities is not None) == model_called for row in stored)


def test_per_class_threshold_overrides_default(tmp_path, sqlite_url):
    # AMBIGUOUS is versicolor at ~0.647: queued at the default 0.9, decided when versicolor's bar is 0.6.
    settings = settings_for(tmp_path, sqlite_url, automation="class_thresholds = { versicolor = 0.6 }")
    with api(settings) as (client, h):
        case = submit(client, h, AMBIGUOUS)
        assert (case["route"], case["threshold"], case["decision"]) == ("auto", 0.6, "versicolor")
        case = submit(client, h, SETOSA)
        assert (case["route"], case["threshold"]) == ("auto", 0.9)
    other = tmp_path / "other"
    other.mkdir()
    settings = settings_for(other, f"sqlite:///{other / 'd.db'}", automation="class_thresholds = { setosa = 1.0 }")
    with api(settings) as (client, h):
        assert submit(client, h, SETOSA)["route"] == "queue"


BAD_BODIES = [
    ({"features": {"sepal length (cm)": 5.0}}, "features.petal width (cm)"),
    ({"features": {**SETOSA, "colour": 1.0}}, "features.colour"),
    ({"features": {**SETOSA, "petal width (cm)": "0.2"}}, "features.petal width (cm)"),
    ({"features": {**SETOSA, "petal width (cm)": True}}, "features.petal width (cm)"),
    ({"features": {**SETOSA, "petal width (cm)": None}}, "features.petal width (cm)"),
    ({"features": [5.0, 0.2]}, "features"),
    ({}, "features"),
    ({"features": SETOSA, "extra": 1}, "extra"),
    ({"features": SETOSA, "key": ""}, "key"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_input_names_the_field_and_stores_nothing(tmp_path, sqlite_url, body, field):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        response = client.post("/api/v1/cases", json=body, headers=h)
        assert response.status_code == 422
        assert response.json()["field"] == field
        assert field in response.json()["detail"]
        assert count_cases(client) == 0


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_are_refused(tmp_path, sqlite_url, raw):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        body = b'{"features": {"sepal length (cm)": ' + raw + b', "petal width (cm)": 0.2}}'
        response = client.post("/api/v1/cases", content=body,
                               headers={**h, "content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["field"] == "features.sepal length (cm)"
        assert count_cases(client) == 0


def test_body_not_json_and_body_too_large(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, extra="[server]\nmax_body_bytes = 1024")) as (client, h):
        response = client.post("/api/v1/cases", content=b"{not json", headers={
            **h, "content-type": "application/json"})
        assert response.status_code == 422 and response.json()["field"] == "body"
        as_text = client.post("/api/v1/cases", content=b'{"features": {}}', headers={**h, "content-type": "text/plain"})
        assert as_text.status_code == 422 and "Content-Type: application/json" in as_text.json()["detail"]
        response = client.post("/api/v1/cases", json={"features": SETOSA, "key": "k" * 2000}, headers=h)
        assert response.status_code == 413 and response.json()["field"] == "body"

        def chunks():  # no Content-Length: the limit must hold on the streamed body too
            yield b'{"features": {"sepal length (cm)": 5.0, "petal width (cm)": 0.2}, "key": "'
            for _ in range(40):
                yield b"k" * 100
            yield b'"}'

        response = client.post("/api/v1/cases", content=chunks(), headers={
            **h, "content-type": "application/json"})
        assert response.status_code == 413
        assert count_cases(client) == 0


def test_api_key_is_required_and_checked(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        assert client.post("/api/v1/cases", json={"features": SETOSA}).status_code == 401
        bad = {"Authorization": "Bearer dk_not-a-real-key"}
        assert client.post("/api/v1/cases", json={"features": SETOSA}, headers=bad).status_code == 401
        assert client.get("/api/v1/cases", headers={"Authorization": "Basic abc"}).status_code == 401
        assert client.get("/api/v1/cases", headers=h).status_code == 200
        assert count_cases(client) == 0


def test_same_key_returns_the_stored_case(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        first = client.post("/api/v1/cases", json={"features": SETOSA, "key": "order-17"}, headers=h)
        again = client.post("/api/v1/cases", json={"features": SETOSA, "key": "order-17"}, headers=h)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        other = client.post("/api/v1/cases", json={"features": AMBIGUOUS, "key": "order-17"}, headers=h)
        assert other.status_code == 409 and other.json()["field"] == "key"
        assert count_cases(client) == 1


def test_cases_sent_without_a_key_get_unique_keys_in_time_order(tmp_path, db_url):
    # Generated keys start with the time (service.new_keys), so they go to the end of the (client, key) index.
    with api(settings_for(tmp_path, db_url)) as (client, h):
        first = client.post("/api/v1/batches", json={"cases": [{"features": SETOSA}] * 1000}, headers=h).json()
        time.sleep(0.01)
        single = submit(client, h, AMBIGUOUS)
        later = client.post("/api/v1/batches", json={"cases": [{"features": SETOSA}] * 10}, headers=h).json()
    keys = [r["case"]["key"] for r in first["results"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", k) for k in keys + [single["key"]])
    assert len(set(keys)) == 1000 and {r["status"] for r in first["results"]} == {201}
    assert max(keys) < single["key"] < min(r["case"]["key"] for r in later["results"])


def test_list_pending_with_cursor_pagination(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        pending = [submit(client, h, AMBIGUOUS)["id"] for _ in range(5)]
        submit(client, h, SETOSA)
        seen, cursor = [], None
        while True:
            params = {"status": "pending", "limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get("/api/v1/cases", params=params, headers=h).json()
            seen += [c["id"] for c in page["items"]]
            assert all(c["status"] == "pending" for c in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == pending
        assert client.get("/api/v1/cases", params={"status": "bogus"}, headers=h).status_code == 422


def test_unknown_case_is_404(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        response = client.get("/api/v1/cases/999", headers=h)
        assert response.status_code == 404 and "999" in response.json()["detail"]


def test_health_and_readiness(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ok", "reasons": []}
        assert "/api/v1/cases" in client.get("/openapi.json").json()["paths"]
