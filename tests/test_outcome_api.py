"""POST /api/v1/cases/{id}/outcome: the ground truth, recorded once per case."""

from __future__ import annotations

from sqlalchemy import select

from decider.cases.tables import CaseEvent
from helpers import api, settings_for, submit


def outcome(client, h, case_id, label):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/cases/{case_id}/outcome", json={"label": label}, headers=h)


def test_valid_outcome_is_recorded_with_an_event(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        case = submit(client, h)
        got = outcome(client, h, case["id"], "setosa")
        assert got.status_code == 200
        body = got.json()
        assert (body["case_id"], body["outcome"], body["recorded"]) == (case["id"], "setosa", True)
        assert client.get(f"/api/v1/cases/{case['id']}", headers=h).json()["outcome"] == "setosa"
        with client.app.state.runtime.engine.connect() as conn:
            events = conn.execute(select(CaseEvent.kind, CaseEvent.actor, CaseEvent.detail)
                                  .where(CaseEvent.case_id == case["id"], CaseEvent.kind == "outcome")).all()
        assert [(e.kind, e.actor, e.detail) for e in events] == [("outcome", "tests", {"label": "setosa"})]


def test_same_outcome_again_is_idempotent(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        case = submit(client, h)
        first = outcome(client, h, case["id"], "versicolor").json()
        again = outcome(client, h, case["id"], "versicolor")
        assert again.status_code == 200
        assert again.json() == first | {"recorded": False}
        with client.app.state.runtime.engine.connect() as conn:
            kinds = conn.execute(select(CaseEvent.kind).where(CaseEvent.case_id == case["id"])).scalars().all()
        assert kinds.count("outcome") == 1


def test_differing_second_outcome_is_refused(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        case = submit(client, h)
        outcome(client, h, case["id"], "setosa")
        clash = outcome(client, h, case["id"], "virginica")
        assert clash.status_code == 409
        assert "setosa" in clash.json()["detail"]
        assert client.get(f"/api/v1/cases/{case['id']}", headers=h).json()["outcome"] == "setosa"


def test_unknown_case(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        got = outcome(client, h, 12345, "setosa")
        assert got.status_code == 404 and "12345" in got.json()["detail"]


def test_unknown_label_names_the_field(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        case = submit(client, h)
        for body in ({"label": "rose"}, {"label": ""}, {"label": 3}, {}):
            got = client.post(f"/api/v1/cases/{case['id']}/outcome", json=body, headers=h)
            assert got.status_code == 422, body
            assert got.json()["field"] == "label", got.json()
        assert client.get(f"/api/v1/cases/{case['id']}", headers=h).json()["outcome"] is None


def test_needs_an_api_key(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        case = submit(client, h)
        assert client.post(f"/api/v1/cases/{case['id']}/outcome", json={"label": "setosa"}).status_code == 401
