"""Audit sampling: `audit_rate` of the model's decisions also get a blind review; the decision stands."""

from __future__ import annotations

import math
import random
import re

from sqlalchemy import select

from decider.cases.tables import Case
from decider.policy import Level, Policy, route
from helpers import AMBIGUOUS, PASSWORD, SETOSA, api, review_headers, settings_for, submit

CASE = Case.__table__  # type: ignore[attr-defined]


def within(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """`count` successes of `n` draws at rate `p`, within `sigmas` binomial standard deviations."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_audit_share_of_the_pure_core_matches_the_rate():
    rng = random.Random(20261125)
    for rate in (0.02, 0.1, 0.5):
        policy = Policy(level=Level.FULL, audit_rate=rate)
        audits = sum(route(policy, case_key=str(i), prediction="setosa", confidence=0.5,
                           audit_draw=rng.random()).audit for i in range(20_000))
        print(f"audit_rate {rate}: {audits / 20_000:.4f} of 20000")
        assert within(audits, 20_000, rate)


def test_audited_cases_keep_the_model_decision_and_wait_for_a_blind_review(tmp_path, sqlite_url):
    n, rate = 2000, 0.25
    settings = settings_for(tmp_path, sqlite_url, level="full", automation=f"audit_rate = {rate}")
    with api(settings) as (client, h):
        answers = [submit(client, h, SETOSA if i % 2 else AMBIGUOUS) for i in range(n)]
        assert all(a["status"] == "decided" and a["decided_by"] == "model" for a in answers)
        assert all(a["decision"] == a["prediction"] for a in answers)  # the client gets the model's decision
        with client.app.state.runtime.engine.connect() as conn:
            rows = conn.execute(select(CASE.c.id, CASE.c.audit, CASE.c.review_status)).all()
        audited = [r.id for r in rows if r.audit]
        print(f"audit_rate {rate}: {len(audited)} audited of {n} = {len(audited) / n:.4f}")
        assert within(len(audited), n, rate)
        assert {r.review_status for r in rows if r.audit} == {"pending"}
        assert {r.review_status for r in rows if not r.audit} == {None}  # the rest never reach a person

        # The reviewer's API view and page hide what the model said.
        case_id = next(a["id"] for a in answers if a["id"] in set(audited) and a["prediction"] == "versicolor")
        seen = client.post(f"/api/v1/review/cases/{case_id}/claim", headers=review_headers(client)).json()
        assert seen["probabilities"] is seen["prediction"] is seen["confidence"] is seen["decision"] is None
        login(client, "alice")
        page = client.get(f"/review/cases/{case_id}").text
        assert "blind audit" in page
        assert 'id="suggestion"' not in page and "versicolor</strong>" not in page
        model = next(a for a in answers if a["id"] == case_id)
        for p in model["probabilities"].values():
            assert f"{p:.3f}" not in page

        # The label is recorded beside the model's decision, which stands.
        resolved = client.post(f"/api/v1/review/cases/{case_id}/resolve",
                               json={"label": "virginica"}, headers=review_headers(client))
        assert resolved.status_code == 200, resolved.text
        after = client.get(f"/api/v1/cases/{case_id}", headers=h).json()
        assert (after["decision"], after["decided_by"]) == ("versicolor", "model")
        with client.app.state.runtime.engine.connect() as conn:
            row = conn.execute(select(CASE).where(CASE.c.id == case_id)).mappings().one()
        assert (row["review_status"], row["review_label"], row["reviewed_by"]) == ("done", "virginica", "alice")


def test_no_audits_at_rate_zero_nor_on_queued_cases(tmp_path, sqlite_url):
    settings = settings_for(tmp_path, sqlite_url, automation="audit_rate = 1.0")  # partial at 0.9
    with api(settings) as (client, h):
        sure, unsure = submit(client, h, SETOSA), submit(client, h, AMBIGUOUS)
        with client.app.state.runtime.engine.connect() as conn:
            audit = dict(conn.execute(select(CASE.c.id, CASE.c.audit)).all())
        assert audit == {sure["id"]: True, unsure["id"]: False}  # a queued case is reviewed anyway


def login(client, name: str) -> None:  # type: ignore[no-untyped-def]
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    response = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf, "next": "/review"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
