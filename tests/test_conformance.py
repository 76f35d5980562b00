"""Every error is JSON `{"detail", "field"}` on the API, and no input makes a 5xx on either engine."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from decider.app import create_app
from helpers import AMBIGUOUS, SETOSA, api, review_headers, seed_credentials, settings_for, submit
from review_helpers import logged_in

JSON = {"Content-Type": "application/json"}


def assert_error(response, status: int, field: str | None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["field"] == field, body
    return body


def test_nul_in_text_fields_is_a_422_naming_the_field(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with api(settings_for(tmp_path, db_url)) as (client, h):
        keyed = client.post("/api/v1/cases", json={"features": SETOSA, "key": "abc\x00def"}, headers=h)
        assert_error(keyed, 422, "key")
        name = "sepal length (cm)\x00"
        features = {name: 5.0, "petal width (cm)": 0.2}
        named = client.post("/api/v1/cases", json={"features": features}, headers=h)
        assert named.status_code == 422 and named.json()["field"].startswith("features.sepal length (cm)\x00")
        assert client.get("/api/v1/cases", headers=h).json()["items"] == []  # nothing reached the database

        # The pages: a query parameter and a form field (a note is stored, so PostgreSQL would refuse it).
        case = submit(client, h, AMBIGUOUS)
        csrf = logged_in(client, "alice")
        assert client.get("/review", params={"suggested": "x\x00"}).status_code == 422
        client.get(f"/review/cases/{case['id']}")  # claims it
        decided = client.post(f"/review/cases/{case['id']}/decide",
                              data={"label": "versicolor", "note": "fine\x00", "csrf": csrf}, follow_redirects=False)
        assert decided.status_code == 422 and "NUL" in decided.text
        assert client.get(f"/api/v1/cases/{case['id']}", headers=h).json()["status"] == "pending"
        decided = client.post(f"/review/cases/{case['id']}/decide",
                              data={"label": "versicolor", "note": "fine", "csrf": csrf}, follow_redirects=False)
        assert decided.status_code == 303


def test_unreadable_bodies_are_a_documented_422_on_the_body(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with api(settings_for(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")) as (client, h):
        not_utf8 = client.post("/api/v1/cases", content=b'{"features": {"\xff\xfe": 1.0}}', headers=h | JSON)
        assert "UTF-8" in assert_error(not_utf8, 422, "body")["detail"]
        for deep in (b"[" * 1000 + b"]" * 1000, b'{"features": ' * 1000 + b"1" + b"}" * 1000):
            nested = client.post("/api/v1/cases", content=deep, headers=h | JSON)
            assert "nested too deep" in assert_error(nested, 422, "body")["detail"]
        # 422 is what the schema declares for invalid input on every operation that takes a body.
        responses = client.get("/openapi.json").json()["paths"]["/api/v1/cases"]["post"]["responses"]
        assert "422" in responses and "400" not in responses


def test_monitoring_times_are_iso_8601_as_the_schema_says(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with api(settings_for(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")) as (client, _):
        admin = review_headers(client, "root")
        for bad in ("0.5", "1700000000", "yesterday"):  # pydantic alone reads numbers as seconds
            assert_error(client.get("/api/v1/monitoring", params={"since": bad}, headers=admin), 422, "query.since")
        for good in ("2026-11-25T08:00:00Z", "2026-11-25T08:00:00.5+01:00", "2026-11-25T08:00", "2026-11-25"):
            assert client.get("/api/v1/monitoring", params={"since": good}, headers=admin).status_code == 200


def test_unknown_route_is_a_json_404(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with api(settings_for(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")) as (client, h):
        assert "/api/v1/nothing" in assert_error(client.get("/api/v1/nothing", headers=h), 404, None)["detail"]
        assert_error(client.get("/metrics/nothing"), 404, None)
        page = client.get("/no-such-page")
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("method", ["OPTIONS", "DELETE", "PUT"])
def test_wrong_method_is_a_405_allowing_every_method_of_the_path(tmp_path, method: str) -> None:  # type: ignore[no-untyped-def]
    with api(settings_for(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")) as (client, h):
        response = client.request(method, "/api/v1/cases", headers=h)
        assert_error(response, 405, None)
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert {"GET", "POST"} <= allowed and method not in allowed
        one = client.request(method, "/api/v1/cases/1", headers=h)
        assert_error(one, 405, None)
        assert "GET" in one.headers["allow"]


def test_an_unexpected_exception_is_a_json_500_and_logged(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    seed_credentials(settings)
    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("a bug with a secret in it")

    app.add_api_route("/api/v1/boom", boom)
    app.add_api_route("/boom-page", boom, include_in_schema=False)
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR, "decider"):
        response = client.get("/api/v1/boom")
        assert response.status_code == 500 and response.json() == {"detail": "internal error", "field": None}
        assert "secret" not in response.text
        page = client.get("/boom-page")
        assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
        assert "secret" not in page.text
        for answer in (response, page):  # sent from outside the middlewares, with the headers all the same
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert answer.headers["x-content-type-options"] == "nosniff"
    logged = [r for r in caplog.records if r.name == "decider" and r.exc_info]
    assert logged and "a bug with a secret in it" in str(logged[0].exc_info[1])
    app.state.runtime.engine.dispose()
