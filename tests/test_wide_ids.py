"""Ids past 2^31 on both engines: an unknown big id is a 404, a big cursor a page, and cases keep being
numbered past 2^31 (PostgreSQL's columns and sequences are 64-bit since the scopes migration)."""

from __future__ import annotations

import hashlib

from sqlalchemy import text

from decider.auth.service import client_for_key
from decider.db import make_engine, upgrade
from helpers import AMBIGUOUS, api, review_headers, settings_for, submit

BIG = 2**31  # one past the largest 32-bit id


def test_ids_past_two_to_the_31_answer_404_not_500(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        submit(client, h, AMBIGUOUS)
        assert client.get(f"/api/v1/cases/{BIG}", headers=h).status_code == 404
        assert client.get("/api/v1/cases", params={"cursor": str(BIG)}, headers=h).json()["items"] == []
        assert client.post(f"/api/v1/cases/{BIG}/outcome", json={"label": "setosa"}, headers=h).status_code == 404
        alice = review_headers(client)
        assert client.get(f"/api/v1/review/cases/{BIG}", headers=alice).status_code == 404
        assert client.post(f"/api/v1/review/cases/{BIG}/claim", headers=alice).status_code == 404
        assert client.get(f"/review/cases/{BIG * 4}", follow_redirects=False).status_code == 303  # login first


def test_cases_are_numbered_past_two_to_the_31(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        first = submit(client, h, AMBIGUOUS)
        with client.app.state.runtime.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"SELECT setval('case_id_seq', {BIG + 5})"))
            else:  # SQLite numbers a new row after the largest id
                conn.execute(text(f'UPDATE "case" SET id = {BIG + 5} WHERE id = :id'), {"id": first["id"]})
        case = submit(client, h, AMBIGUOUS)
        assert case["id"] == BIG + 6
        claimed = client.post(f"/api/v1/review/cases/{case['id']}/claim", headers=review_headers(client))
        assert claimed.status_code == 200  # its events (case_event.case_id) store the wide id too
        assert client.get(f"/api/v1/cases/{case['id']}", headers=h).json()["id"] == case["id"]


def test_keys_from_before_the_scopes_migration_are_client_keys(db_url):
    upgrade(db_url, "44c06e86a36b")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO api_key (name, prefix, key_hash, created_at) VALUES "
                          "('legacy', 'dk_legacy', :digest, CURRENT_TIMESTAMP)"),
                     {"digest": hashlib.sha256(b"dk_legacy-key").hexdigest()})
    upgrade(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT scope FROM api_key WHERE name = 'legacy'")).scalar() == "client"
    assert client_for_key(engine=engine, key="dk_legacy-key") == "legacy"
    engine.dispose()
