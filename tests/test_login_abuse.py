"""Logins that resist abuse: racing wrong passwords check at most the limit, unknown names are throttled
too, nobody can lock another person out from elsewhere, waits grow, and password checks are bounded."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlmodel import Session

from decider.auth.service import set_password
from decider.auth.tables import LoginThrottle
from decider.auth.throttle import Waiting
from decider.db import as_utc, now
from decider.web import pages
from decider.web.pages import LOGIN_REFUSED
from helpers import api, settings_for
from review_helpers import csrf_of, login

LIMITS = ("[review]\nmax_failed_logins = 5\nmax_failed_logins_per_address = 12\nlockout_seconds = 60\n"
          "login_refusal_delay_seconds = 0.05\n")


class Checks:
    """Counts password checks (the real argon2 check still runs) and the most running at once."""

    def __init__(self, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        self.count = self.running = self.most = 0
        self.lock = threading.Lock()
        real = pages.verify_login

        def counted(**kw):  # type: ignore[no-untyped-def]
            with self.lock:
                self.count += 1
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                return real(**kw)
            finally:
                with self.lock:
                    self.running -= 1

        monkeypatch.setattr(pages, "verify_login", counted)


def from_address(client: TestClient, address: str) -> TestClient:
    """Another browser on the same app, from another address."""
    return TestClient(client.app, client=(address, 40000))


def test_racing_wrong_passwords_check_at_most_the_limit(tmp_path, db_url, monkeypatch):
    checks = Checks(monkeypatch)
    with api(settings_for(tmp_path, db_url, extra=LIMITS)) as (client, _):
        token = csrf_of(client.get("/login").text)

        def attempt(_: int) -> int:
            return client.post("/login", data={"name": "alice", "password": "wrong wrong", "csrf": token},
                               follow_redirects=False).status_code

        with ThreadPoolExecutor(32) as pool:
            codes = list(pool.map(attempt, range(100)))
    assert set(codes) <= {401, 503} and codes.count(401) >= 5
    assert checks.count <= 5, checks.count


def test_unknown_names_are_throttled_by_address_with_the_same_answer(tmp_path, sqlite_url, monkeypatch):
    checks = Checks(monkeypatch)
    with api(settings_for(tmp_path, sqlite_url, extra=LIMITS)) as (client, _):
        answers = [login(client, f"nobody{i}", "guess guess") for i in range(20)]
        assert all(a.status_code == 401 and LOGIN_REFUSED in a.text for a in answers)
        assert checks.count == 12  # the address's allowance; the rest refused before any hashing
        assert login(client, "alice").status_code == 401  # this address waits, even with the right password
        elsewhere = from_address(client, "10.0.0.2")
        assert login(elsewhere, "alice").status_code == 303


def test_an_attacker_cannot_lock_a_person_out_from_elsewhere(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, extra=LIMITS)) as (client, _):
        attacker = from_address(client, "203.0.113.9")
        for _ in range(8):
            assert login(attacker, "root", "guess guess").status_code == 401
        assert login(attacker, "root").status_code == 401  # the attacker's address waits
        assert login(client, "root").status_code == 303  # the admin, from their own address, does not


def test_waits_double_after_each_failure_past_the_limit(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, extra=LIMITS)) as (client, _):
        engine = client.app.state.runtime.engine
        key = "n:testclient|alice"

        def wait_left() -> float:
            with engine.connect() as conn:
                until = conn.execute(select(LoginThrottle.blocked_until).where(LoginThrottle.key == key)).scalar()
            return (as_utc(until) - now()).total_seconds()

        for _ in range(5):
            login(client, "alice", "wrong wrong")
        waits = [wait_left()]
        for _ in range(3):
            with engine.begin() as conn:  # the wait is over (instead of sleeping through it)
                conn.execute(update(LoginThrottle).where(LoginThrottle.key == key)
                             .values(blocked_until=now() - timedelta(seconds=1)))
            client.app.state.login_gate.memory.clear()  # what the process remembered of the wait, too
            login(client, "alice", "wrong wrong")
            waits.append(wait_left())
    assert [round(w / 60) for w in waits] == [1, 2, 4, 8]


def test_password_checks_run_one_at_a_time_and_a_flood_is_turned_away(tmp_path, sqlite_url, monkeypatch):
    checks = Checks(monkeypatch)
    settings = settings_for(tmp_path, sqlite_url, extra=LIMITS.replace("= 12", "= 1000"))
    with api(settings) as (client, _):
        token = csrf_of(client.get("/login").text)
        browsers = [from_address(client, f"198.51.100.{i}") for i in range(40)]

        def attempt(i: int) -> int:
            browsers[i].cookies = client.cookies
            return browsers[i].post("/login", data={"name": f"user{i}", "password": "guess guess", "csrf": token},
                                    follow_redirects=False).status_code

        with ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(attempt, range(40)))
    assert checks.most == 1  # login_hash_concurrency = 1
    assert set(codes) <= {401, 503} and 401 in codes
    assert codes.count(503) == 40 - checks.count  # every attempt not checked was told it was busy


def test_every_failure_is_answered_after_the_same_pause(tmp_path, sqlite_url):
    settings = settings_for(tmp_path, sqlite_url, extra=LIMITS.replace("= 0.05", "= 0.6"))
    with api(settings) as (client, _):
        took = {}
        for what, name, password in (("wrong", "alice", "wrong wrong"), ("unknown", "nobody", "wrong wrong")):
            started = time.monotonic()
            assert login(client, name, password).status_code == 401
            took[what] = time.monotonic() - started
        for _ in range(5):
            login(client, "bob", "wrong wrong")
        started = time.monotonic()
        assert login(client, "bob").status_code == 401  # waiting, even with the right password
        took["throttled"] = time.monotonic() - started
    assert all(t >= 0.6 for t in took.values()), took


def test_a_new_password_lets_a_locked_out_owner_in(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, extra=LIMITS)) as (client, _):
        for _ in range(6):
            login(client, "root", "wrong wrong")
        assert login(client, "root").status_code == 401
        with Session(client.app.state.runtime.engine) as session:  # `decider users password root`
            set_password(session=session, name="root", password="a brand new password")
            session.commit()
        time.sleep(Waiting.REMEMBER_SECONDS + 0.2)  # what a running server remembers of the wait, at most
        assert login(client, "root", "a brand new password").status_code == 303
