"""Logins for people: argon2 hashes, the CLI, login required, CSRF on every form, lock-out."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select, update

from decider.auth.tables import LoginThrottle, User
from decider.web.pages import LOGIN_REFUSED
from helpers import AMBIGUOUS, api, settings_for, submit
from review_helpers import csrf_of, logged_in, login

LOCKOUT = "[review]\nmax_failed_logins = 3\nlockout_seconds = 600\n"


@pytest.mark.parametrize("path", ["/", "/review", "/review?sort=confidence", "/review/cases/1"])
def test_every_page_but_login_needs_login(tmp_path, sqlite_url, path):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
        assert client.get("/login").status_code == 200


def test_a_form_post_without_login_goes_to_the_login_page(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        case = submit(client, h, AMBIGUOUS)
        for path in ("/review/next", f"/review/cases/{case['id']}/decide", f"/review/cases/{case['id']}/skip"):
            response = client.post(path, data={"label": "setosa", "csrf": "x"}, follow_redirects=False)
            assert (response.status_code, response.headers["location"]) == (303, "/login")
        assert client.get(f"/api/v1/cases/{case['id']}", headers=h).json()["status"] == "pending"


def test_after_login_the_reviewer_returns_to_the_page_asked_for(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        first = client.get("/review?sort=confidence", follow_redirects=False)
        assert first.headers["location"] == "/login?next=%2Freview%3Fsort%3Dconfidence"
        token = csrf_of(client.get(first.headers["location"]).text)
        response = client.post("/login", follow_redirects=False, data={
            "name": "alice", "password": "correct horse battery", "csrf": token, "next": "/review?sort=confidence"})
        assert response.headers["location"] == "/review?sort=confidence"


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example", "https://evil.example/"])
def test_login_never_redirects_off_site(tmp_path, sqlite_url, target):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        token = csrf_of(client.get("/login").text)
        response = client.post("/login", follow_redirects=False, data={
            "name": "alice", "password": "correct horse battery", "csrf": token, "next": target})
        assert response.headers["location"] == "/review"


def test_forged_posts_are_refused_with_403(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, level="assist")) as (client, h):
        case = submit(client, h, AMBIGUOUS)
        token = logged_in(client, "alice")
        forms = [("/review/next", {}), (f"/review/cases/{case['id']}/decide", {"label": "setosa"}),
                 (f"/review/cases/{case['id']}/skip", {}), ("/logout", {})]
        for path, data in forms:
            for forged in ({}, {"csrf": "not-the-token"}, {"csrf": "ünïcode"}):
                response = client.post(path, data=data | forged, follow_redirects=False)
                assert response.status_code == 403, (path, forged, response.text)
                assert "CSRF" in response.text
        got = client.get(f"/api/v1/cases/{case['id']}", headers=h).json()
        assert got["status"] == "pending"
        assert client.get("/review").status_code == 200  # the forged logout did not log alice out
        assert client.post("/review/next", data={"csrf": token}, follow_redirects=False).status_code == 303


def test_login_form_itself_needs_its_token(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        response = client.post("/login", data={"name": "alice", "password": "correct horse battery"})
        assert response.status_code == 403
        assert client.get("/review", follow_redirects=False).status_code == 303


def test_logout_ends_the_session(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        token = logged_in(client, "bob")
        assert client.post("/logout", data={"csrf": token}, follow_redirects=False).headers["location"] == "/login"
        assert client.get("/review", follow_redirects=False).status_code == 303


def test_wrong_password_and_unknown_name_look_alike(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        wrong, unknown = login(client, "alice", "nope nope nope"), login(client, "mallory", "nope nope nope")
        assert wrong.status_code == unknown.status_code == 401
        assert LOGIN_REFUSED in wrong.text and LOGIN_REFUSED in unknown.text


def test_lockout_after_repeated_bad_passwords(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, extra=LOCKOUT)) as (client, _):
        for _ in range(3):
            assert login(client, "alice", "not the password").status_code == 401
        locked = login(client, "alice")  # the right password, but too late: the same answer as a wrong one
        assert locked.status_code == 401 and LOGIN_REFUSED in locked.text
        assert login(client, "bob").status_code == 303  # other accounts are unaffected
        engine = client.app.state.runtime.engine
        with engine.begin() as conn:  # the wait ends (instead of waiting ten minutes in a test)
            conn.execute(update(LoginThrottle).values(blocked_until=None))
        client.app.state.login_gate.memory.clear()  # what the process remembered of the wait, too
        assert login(client, "alice").status_code == 303


def test_a_good_login_resets_the_failure_count(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, extra=LOCKOUT)) as (client, _):
        for _ in range(2):
            login(client, "alice", "not the password")
        assert login(client, "alice").status_code == 303
        for _ in range(2):
            login(client, "alice", "not the password")
        assert login(client, "alice").status_code == 303


def test_users_add_creates_a_login_with_an_argon2_hash(tmp_path, sqlite_url):
    config = tmp_path / "config.toml"
    settings = settings_for(tmp_path, sqlite_url)
    with api(settings) as (client, _):
        result = subprocess.run(
            [sys.executable, "-m", "decider", "users", "add", "erin", "--role", "admin", "--config", str(config)],
            input="a long passphrase\na long passphrase\n", capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert login(client, "erin", "a long passphrase").status_code == 303
        assert "erin (admin)" in client.get("/review").text
        with client.app.state.runtime.engine.connect() as conn:
            stored = conn.execute(select(User.password_hash).where(User.name == "erin")).scalar_one()
        assert stored.startswith("$argon2") and "a long passphrase" not in stored
        again = subprocess.run(
            [sys.executable, "-m", "decider", "users", "add", "erin", "--password", "another password",
             "--config", str(config)], capture_output=True, text=True, timeout=60)
        assert again.returncode != 0 and "already exists" in again.stderr


def test_short_passwords_are_refused(tmp_path, sqlite_url):
    config = tmp_path / "config.toml"
    with api(settings_for(tmp_path, sqlite_url)):
        result = subprocess.run(
            [sys.executable, "-m", "decider", "users", "add", "frank", "--password", "short", "--config", str(config)],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "at least 8 characters" in result.stderr


def test_api_keys_do_not_open_the_pages(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        assert client.get("/review", headers=h, follow_redirects=False).status_code == 303
