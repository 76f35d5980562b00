"""Each credential does only what its role needs: client keys act on their own cases, review tokens act as
their person on the queue, admins' tokens read the operator APIs, and no body can name the actor."""

from __future__ import annotations

import subprocess
import sys

from sqlmodel import Session

from decider.auth.service import create_api_key, set_disabled
from helpers import AMBIGUOUS, SETOSA, api, review_headers, settings_for, submit


def second_client(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with Session(client.app.state.runtime.engine) as session:
        key = create_api_key(session=session, name="other")
        session.commit()
    return {"Authorization": f"Bearer {key}"}


def test_a_client_sees_and_reports_only_its_own_cases(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, mine):
        theirs = second_client(client)
        case = submit(client, mine, AMBIGUOUS)
        other = submit(client, theirs, SETOSA)
        read = client.get(f"/api/v1/cases/{case['id']}", headers=theirs)
        assert read.status_code == 404 and read.json()["detail"] == f"no case {case['id']}"  # as if unknown
        assert [c["id"] for c in client.get("/api/v1/cases", headers=theirs).json()["items"]] == [other["id"]]
        assert [c["id"] for c in client.get("/api/v1/cases", headers=mine).json()["items"]] == [case["id"]]
        pre_empt = client.post(f"/api/v1/cases/{case['id']}/outcome", json={"label": "setosa"}, headers=theirs)
        assert pre_empt.status_code == 404
        own = client.post(f"/api/v1/cases/{case['id']}/outcome", json={"label": "virginica"}, headers=mine)
        assert own.status_code == 200 and own.json()["recorded"] is True  # the owner was not pre-empted


def test_a_client_key_cannot_act_on_the_review_queue_or_read_operator_apis(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        case = submit(client, h, AMBIGUOUS)
        for method, path in (("post", "/api/v1/review/claim"), ("post", f"/api/v1/review/cases/{case['id']}/claim"),
                             ("get", f"/api/v1/review/cases/{case['id']}"),
                             ("post", f"/api/v1/review/cases/{case['id']}/resolve"),
                             ("get", "/api/v1/monitoring"), ("get", "/api/v1/models"), ("get", "/api/v1/policy")):
            body = {"json": {"label": "setosa"}} if method == "post" else {}
            got = getattr(client, method)(path, headers=h, **body)
            assert got.status_code == 403, (path, got.text)
        assert client.get(f"/api/v1/cases/{case['id']}", headers=h).json()["status"] == "pending"


def test_review_tokens_act_as_their_person_and_only_on_the_queue(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        case_id = submit(client, h, AMBIGUOUS)["id"]
        alice, bob = review_headers(client, "alice"), review_headers(client, "bob")
        named = client.post(f"/api/v1/review/cases/{case_id}/claim", json={"reviewer": "model"}, headers=alice)
        assert named.status_code == 422 and named.json()["field"] == "reviewer"
        assert client.post(f"/api/v1/review/cases/{case_id}/claim", headers=alice).json()["claimed_by"] == "alice"
        taken = client.post(f"/api/v1/review/cases/{case_id}/claim", headers=bob)  # no take-over of a live claim
        assert taken.status_code == 409 and "claimed by alice" in taken.json()["detail"]
        forged = client.post(f"/api/v1/review/cases/{case_id}/resolve",
                             json={"label": "setosa", "reviewer": "alice"}, headers=bob)
        assert forged.status_code == 422 and forged.json()["field"] == "reviewer"
        done = client.post(f"/api/v1/review/cases/{case_id}/resolve", json={"label": "virginica"}, headers=alice)
        assert (done.json()["decided_by"], done.json()["decision"]) == ("alice", "virginica")
        assert client.post("/api/v1/cases", json={"features": SETOSA}, headers=alice).status_code == 403
        assert client.get("/api/v1/monitoring", headers=alice).status_code == 403  # reviewers: not operator APIs
        assert client.get("/api/v1/monitoring", headers=review_headers(client, "root")).status_code == 200


def test_a_disabled_persons_token_stops_at_once(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        submit(client, h, AMBIGUOUS)
        alice = review_headers(client, "alice")
        assert client.post("/api/v1/review/claim", headers=alice).status_code == 200
        with Session(client.app.state.runtime.engine) as session:
            set_disabled(session=session, name="alice", disabled=True)
            session.commit()
        refused = client.post("/api/v1/review/claim", headers=alice)
        assert refused.status_code == 401 and "disabled" in refused.json()["detail"]


def cli(config, *args: str, input: str | None = None) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "decider", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, input=input)


def test_cli_tokens_replace_keys_list_shows_scopes_and_names_are_reusable(tmp_path, sqlite_url):
    config = tmp_path / "config.toml"
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        first = cli(config, "users", "token", "alice")
        second = cli(config, "users", "token", "alice")
        assert first.returncode == second.returncode == 0, first.stderr
        old, new = ({"Authorization": f"Bearer {r.stdout.strip()}"} for r in (first, second))
        assert client.post("/api/v1/review/claim", headers=old).status_code == 401  # replaced
        assert client.post("/api/v1/review/claim", headers=new).status_code == 204
        listing = cli(config, "keys", "list")
        assert listing.returncode == 0
        rows = [line.split() for line in listing.stdout.splitlines()]
        assert ["tests", "client"] == rows[0][:2] and rows[0][-1] == "live"
        assert [r[:2] for r in rows[1:]] == [["alice", "review"], ["alice", "review"]]
        assert new["Authorization"].split()[1] not in listing.stdout + listing.stderr  # never the key itself
        assert "submit cases" in listing.stderr
        assert cli(config, "keys", "revoke", "tests").returncode == 0
        again = cli(config, "keys", "create", "tests")
        assert again.returncode == 0 and again.stdout.startswith("dk_")
        rotated = cli(config, "keys", "rotate", "tests")
        assert rotated.returncode == 0 and rotated.stdout.strip() != again.stdout.strip()
        assert client.get("/api/v1/cases", headers={"Authorization": f"Bearer {rotated.stdout.strip()}"}
                          ).status_code == 200


def test_names_decider_writes_itself_cannot_be_taken(tmp_path, sqlite_url):
    config = tmp_path / "config.toml"
    with api(settings_for(tmp_path, sqlite_url)):
        for args in (("users", "add", "model", "--password", "long enough password"),
                     ("users", "add", "cli:root", "--password", "long enough password"),
                     ("users", "add", "a b", "--password", "long enough password"),
                     ("keys", "create", "config")):
            result = cli(config, *args)
            assert result.returncode == 2 and "use 1-100 letters" in result.stderr, args


def test_a_review_token_can_be_revoked_alone_and_names_differ_in_more_than_case(tmp_path, sqlite_url):
    config = tmp_path / "config.toml"
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        token = cli(config, "users", "token", "alice").stdout.strip()
        assert cli(config, "users", "revoke-token", "alice").returncode == 0
        assert client.post("/api/v1/review/claim", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        look_alike = cli(config, "users", "add", "Alice", "--password", "long enough password")
        assert look_alike.returncode == 2 and "already exists" in look_alike.stderr


def test_health_answers_head_requests(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        assert client.head("/healthz").status_code == 200
        assert client.head("/readyz").status_code == 200
