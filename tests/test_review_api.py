"""/api/v1/review: claim next, claim, release, resolve and read, with the page's rules and a 409 when refused."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from decider.cases.service import CASE
from decider.db import now
from helpers import AMBIGUOUS, SETOSA, api, review_headers, settings_for, submit


def post(client, who, path, **body):  # type: ignore[no-untyped-def]
    """POST as `who`, with their own review token."""
    return client.post(f"/api/v1/review{path}", json=body, headers=review_headers(client, who))


def test_claim_next_gives_each_reviewer_a_different_case(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url, level="assist")) as (client, h):
        ids = [submit(client, h, AMBIGUOUS)["id"] for _ in range(2)]
        a = post(client, "alice", "/claim")
        b = post(client, "bob", "/claim")
        assert (a.status_code, b.status_code) == (200, 200)
        assert [a.json()["id"], b.json()["id"]] == ids
        assert a.json()["claimed_by"] == "alice" and a.json()["features"] == AMBIGUOUS
        assert a.json()["prediction"] == "versicolor"  # assist: the suggestion is shown
        assert post(client, "root", "/claim").status_code == 204
        assert post(client, "alice", "/claim").json()["id"] == ids[0]  # still hers


def test_resolve_is_refused_with_409_when_not_yours_or_already_resolved(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        case_id = submit(client, h, AMBIGUOUS)["id"]
        unclaimed = post(client, "alice", f"/cases/{case_id}/resolve", label="setosa")
        assert unclaimed.status_code == 409 and "not claimed by you" in unclaimed.json()["detail"]
        assert post(client, "alice", f"/cases/{case_id}/claim").status_code == 200
        taken = post(client, "bob", f"/cases/{case_id}/claim")
        assert taken.status_code == 409 and "claimed by alice" in taken.json()["detail"]
        assert post(client, "bob", f"/cases/{case_id}/resolve", label="setosa").status_code == 409
        assert post(client, "bob", f"/cases/{case_id}/release").status_code == 409
        done = post(client, "alice", f"/cases/{case_id}/resolve", label="virginica", note="petals")
        assert done.status_code == 200
        assert (done.json()["status"], done.json()["decision"], done.json()["decided_by"]) == (
            "decided", "virginica", "alice")
        again = post(client, "alice", f"/cases/{case_id}/resolve", label="setosa")
        assert again.status_code == 409 and "already resolved" in again.json()["detail"]
        assert client.get(f"/api/v1/cases/{case_id}", headers=h).json()["decision"] == "virginica"


def test_release_returns_the_case_and_an_expired_lease_too(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        case_id = submit(client, h, AMBIGUOUS)["id"]
        post(client, "alice", "/claim")
        assert post(client, "alice", f"/cases/{case_id}/release").status_code == 204
        assert post(client, "bob", "/claim").json()["id"] == case_id
        with client.app.state.runtime.engine.begin() as conn:
            conn.execute(update(CASE).values(claim_expires_at=now() - timedelta(seconds=1)))
        assert post(client, "alice", "/claim").json()["id"] == case_id
        late = post(client, "bob", f"/cases/{case_id}/resolve", label="setosa")
        assert late.status_code == 409 and "claimed by alice" in late.json()["detail"]


def test_bad_labels_unknown_cases_and_missing_keys(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        case_id = submit(client, h, AMBIGUOUS)["id"]
        post(client, "alice", "/claim")
        bad = post(client, "alice", f"/cases/{case_id}/resolve", label="rose")
        assert bad.status_code == 422 and bad.json()["field"] == "label"
        assert post(client, "alice", "/cases/999999/claim").status_code == 404
        assert client.post("/api/v1/review/claim").status_code == 401


def test_shadow_cases_are_served_without_the_models_output(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url, level="shadow")) as (client, h):
        case_id = submit(client, h, AMBIGUOUS)["id"]
        claimed = post(client, "alice", "/claim").json()
        assert claimed["id"] == case_id
        assert claimed["prediction"] is claimed["probabilities"] is claimed["confidence"] is None
        history = client.get(f"/api/v1/review/cases/{case_id}", headers=review_headers(client)).json()["history"]
        assert all(e["detail"] is None for e in history if e["kind"] == "scored")


def test_blind_audit_hides_the_models_decision_until_labelled(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, automation="audit_rate = 1.0")) as (client, h):
        case = submit(client, h, SETOSA)
        assert (case["status"], case["decision"]) == ("decided", "setosa")  # the client's answer stands
        claimed = post(client, "alice", "/claim").json()
        assert (claimed["id"], claimed["audit"]) == (case["id"], True)
        assert claimed["decision"] is claimed["prediction"] is claimed["probabilities"] is None
        done = post(client, "alice", f"/cases/{case['id']}/resolve", label="setosa").json()
        assert (done["decision"], done["decided_by"], done["review_status"]) == ("setosa", "model", "done")


def test_history_names_who_did_what(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        case_id = submit(client, h, AMBIGUOUS)["id"]
        post(client, "alice", "/claim")
        post(client, "alice", f"/cases/{case_id}/release")
        post(client, "bob", "/claim")
        post(client, "bob", f"/cases/{case_id}/resolve", label="versicolor")
        got = client.get(f"/api/v1/review/cases/{case_id}", headers=review_headers(client)).json()
        steps = [(e["kind"], e["actor"]) for e in got["history"]]
        assert steps == [("created", "tests"), ("scored", "iris-v1"), ("claimed", "alice"),
                         ("released", "alice"), ("claimed", "bob"), ("decided", "bob")]
        assert got["history"][-1]["detail"] == {"label": "versicolor", "note": None}
