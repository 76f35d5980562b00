"""Corrections with a trail, undo right after a decision, and deadlines with a fallback."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import select, update

from decider.cases.service import CASE
from decider.db import now
from decider.review import deadlines
from decider.webhooks.outbox import DELIVERY, ENDPOINT
from helpers import AMBIGUOUS, SETOSA, api, review_headers, seed_credentials, server, settings_for, submit
from review_helpers import logged_in


def history_kinds(client, headers, case_id):  # type: ignore[no-untyped-def]
    return [e["kind"] for e in client.get(f"/api/v1/review/cases/{case_id}", headers=headers).json()["history"]]


def add_endpoint(engine, client: str = "tests") -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:  # a destination is not needed: the outbox rows are what is checked
        conn.execute(ENDPOINT.insert().values(client=client, url="http://127.0.0.1:9/", secret="whsec_AAAA",
                                              events=["*"], enabled=True, created_by="test", created_at=now()))


def events_of(engine, case_id):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [(r.event_type, r.status) for r in conn.execute(
            select(DELIVERY.c.event_type, DELIVERY.c.status).where(DELIVERY.c.case_id == case_id)
            .order_by(DELIVERY.c.id))]


def test_a_correction_keeps_the_trail_tells_the_client_and_feeds_the_figures(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, headers):
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        add_endpoint(engine)
        admin, alice, bob = (review_headers(client, n) for n in ("root", "alice", "bob"))
        auto = submit(client, headers, SETOSA)
        queued = submit(client, headers, AMBIGUOUS)
        client.post(f"/api/v1/review/cases/{queued['id']}/claim", headers=alice)
        client.post(f"/api/v1/review/cases/{queued['id']}/resolve", headers=alice, json={"label": "versicolor"})

        # A note is required, the label must be a class, and only the decider or an admin may correct.
        r = client.post(f"/api/v1/review/cases/{queued['id']}/correct", headers=alice, json={"label": "virginica"})
        assert r.status_code == 422 and r.json()["field"] == "note"
        r = client.post(f"/api/v1/review/cases/{queued['id']}/correct", headers=alice,
                        json={"label": "tulip", "note": "x"})
        assert r.status_code == 422 and r.json()["field"] == "label"
        r = client.post(f"/api/v1/review/cases/{queued['id']}/correct", headers=bob,
                        json={"label": "virginica", "note": "looks wrong"})
        assert r.status_code == 403 and "only an admin" in r.json()["detail"]
        r = client.post(f"/api/v1/review/cases/{auto['id']}/correct", headers=headers,
                        json={"label": "virginica", "note": "x"})
        assert r.status_code == 403  # a client key cannot correct anything

        # The reviewer corrects their own slip; an admin corrects the model.
        r = client.post(f"/api/v1/review/cases/{queued['id']}/correct", headers=alice,
                        json={"label": "virginica", "note": "pressed the wrong key"})
        assert r.status_code == 200 and r.json()["decision"] == "virginica"
        r = client.post(f"/api/v1/review/cases/{auto['id']}/correct", headers=admin,
                        json={"label": "versicolor", "note": "the lab says so"})
        assert r.status_code == 200
        assert r.json()["decided_by"] == "root"
        r = client.post(f"/api/v1/review/cases/{auto['id']}/correct", headers=admin,
                        json={"label": "versicolor", "note": "again"})
        assert r.status_code == 409  # already that

        assert history_kinds(client, admin, queued["id"])[-1] == "corrected"
        trail = client.get(f"/api/v1/review/cases/{queued['id']}", headers=admin).json()["history"]
        assert [e["kind"] for e in trail if e["kind"] in ("decided", "corrected")] == ["decided", "corrected"]
        assert trail[-1]["detail"]["from"] == "versicolor" and trail[-1]["detail"]["note"] == "pressed the wrong key"
        # The client hears of both, and reads the corrected decision.
        assert [t for t, _ in events_of(engine, queued["id"])] == ["case.decided", "case.corrected"]
        assert [t for t, _ in events_of(engine, auto["id"])] == ["case.decided", "case.corrected"]
        assert client.get(f"/api/v1/cases/{queued['id']}", headers=headers).json()["decision"] == "virginica"
        # The queued case's label is the corrected one (the evidence); the unaudited automatic one keeps none.
        with engine.connect() as conn:
            labels = dict(conn.execute(select(CASE.c.id, CASE.c.review_label)).all())
        assert labels[queued["id"]] == "virginica" and labels[auto["id"]] is None
        # The case page lists the deliveries to an admin (the endpoint URL is not a reviewer's business).
        logged_in(client, "root")
        page = client.get(f"/review/cases/{auto['id']}").text
        assert 'id="deliveries"' in page and "case.corrected" in page and "http://127.0.0.1:9/" in page
        logged_in(client, "alice")
        assert 'id="deliveries"' not in client.get(f"/review/cases/{queued['id']}").text


def test_undo_takes_a_decision_back_within_its_window_and_withdraws_the_webhook(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url, extra="[review]\nundo_seconds = 2")
    with api(settings) as (client, headers):
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        add_endpoint(engine)
        first, second = submit(client, headers, AMBIGUOUS), submit(client, headers, AMBIGUOUS)
        csrf = logged_in(client, "alice")
        client.post("/review/next", data={"csrf": csrf})
        r = client.post(f"/review/cases/{first['id']}/decide", data={"csrf": csrf, "label": "virginica"})
        assert r.status_code == 200 and f"/review/cases/{second['id']}/undo" not in r.text
        assert f'action="/review/cases/{first["id"]}/undo"' in r.text  # the next case offers the undo
        assert events_of(engine, first["id"]) == [("case.decided", "pending")]  # held back for the window
        r = client.post(f"/review/cases/{first['id']}/undo", data={"csrf": csrf})
        assert r.status_code == 200 and "decision undone" in r.text
        case = client.get(f"/api/v1/cases/{first['id']}", headers=headers).json()
        assert case["status"] == "pending" and case["decision"] is None
        assert events_of(engine, first["id"]) == [("case.decided", "cancelled")]  # the client never heard
        assert history_kinds(client, review_headers(client, "root"), first["id"])[-2:] == ["decided", "undone"]
        # Decide again; past the window there is nothing to undo.
        client.post(f"/review/cases/{first['id']}/decide", data={"csrf": csrf, "label": "versicolor"})
        time.sleep(2.1)
        r = client.post(f"/review/cases/{first['id']}/undo", data={"csrf": csrf})
        assert "no decision of yours from the last 2 s" in r.text
        assert client.get(f"/api/v1/cases/{first['id']}", headers=headers).json()["decision"] == "versicolor"


def test_a_deadline_fallback_fires_within_one_sweep_of_the_due_time(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url, extra=(
        '[review]\ndue_minutes = 0.02\nfallback = "model"\n\n[server]\nreload_seconds = 0.3\n'))
    key = seed_credentials(settings)
    import httpx

    with server(settings.config_path) as base, httpx.Client(base_url=base) as http:
        h = {"Authorization": f"Bearer {key}"}
        case = http.post("/api/v1/cases", headers=h, json={"features": AMBIGUOUS}).json()
        assert case["route"] == "queue" and case["status"] == "pending"
        due = case_due(settings.database_url, case["id"])
        assert abs((due - now()).total_seconds() - 1.2) < 1.0  # 0.02 minutes after it arrived
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = http.get(f"/api/v1/cases/{case['id']}", headers=h).json()
            if got["status"] == "decided":
                break
            time.sleep(0.05)
        assert got["status"] == "decided" and got["decided_by"] == "fallback" and got["decision"] == case["prediction"]
        lag = (datetime.fromisoformat(got["decided_at"]) - due).total_seconds()  # as the sweep stamped it
        assert 0 <= lag < 0.3 + 0.5  # never before the due time; within one sweep period, plus the sweep's work
        history = http.get(f"/api/v1/review/cases/{case['id']}", headers=review_headers(settings, "root")).json()
        assert history["history"][-1]["kind"] == "fallback"


def case_due(url, case_id):  # type: ignore[no-untyped-def]
    from decider.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        due = conn.execute(select(CASE.c.due_at).where(CASE.c.id == case_id)).scalar_one()
    engine.dispose()
    return due


def test_escalation_marks_overdue_sends_the_event_and_puts_the_case_first(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url, extra='[review]\ndue_minutes = 60\nfallback = "escalate"\n')
    with api(settings) as (client, headers):
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        add_endpoint(engine)
        older, newer = submit(client, headers, AMBIGUOUS), submit(client, headers, AMBIGUOUS)
        with engine.begin() as conn:  # the newer case passed its deadline (as if it had a shorter one)
            conn.execute(update(CASE).where(CASE.c.id == newer["id"]).values(due_at=now() - timedelta(seconds=1)))
        assert deadlines.sweep(engine, settings.review) == 1
        assert deadlines.sweep(engine, settings.review) == 0  # once
        got = client.get(f"/api/v1/cases/{newer['id']}", headers=headers).json()
        assert got["status"] == "pending"  # escalated, not decided
        assert [t for t, _ in events_of(engine, newer["id"])] == ["case.overdue"]
        assert "decider_queue_overdue 1.0" in client.get("/metrics").text
        alice = review_headers(client, "alice")
        assert client.post("/api/v1/review/claim", headers=alice).json()["id"] == newer["id"]  # the urgent one
        client.post(f"/api/v1/review/cases/{newer['id']}/resolve", headers=alice, json={"label": "setosa"})
        metrics = client.get("/metrics").text
        assert "decider_queue_overdue 0.0" in metrics
        assert 'decider_time_to_decision_seconds{quantile="0.5"}' in metrics
        assert older["id"] < newer["id"]
