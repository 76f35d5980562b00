"""Sessions live on the server: logout, a password change and disabling a person end them at once, and
the role comes from the database on every request, never from the cookie."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlmodel import Session

from decider.auth.service import set_disabled, set_password, shared_secret
from decider.auth.tables import User
from decider.db import make_engine, upgrade
from helpers import api, settings_for
from review_helpers import logged_in, login


def copy_of(client: TestClient) -> TestClient:
    """A second browser holding a copy of the first one's cookie."""
    other = TestClient(client.app)
    other.cookies = dict(client.cookies)
    return other


def test_a_copied_cookie_stops_working_at_logout(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, _):
        token = logged_in(client, "alice")
        stolen = copy_of(client)
        assert stolen.get("/review").status_code == 200
        client.post("/logout", data={"csrf": token})
        page = stolen.get("/review", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_a_password_change_or_disabling_ends_every_session(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        engine = client.app.state.runtime.engine
        logged_in(client, "alice")
        with Session(engine) as session:
            set_password(session=session, name="alice", password="a brand new password")
            session.commit()
        assert client.get("/review", follow_redirects=False).status_code == 303
        other = TestClient(client.app)
        logged_in(other, "bob")
        with Session(engine) as session:
            set_disabled(session=session, name="bob", disabled=True)
            session.commit()
        assert other.get("/review", follow_redirects=False).status_code == 303
        assert login(other, "bob").status_code == 401  # and no new login


def test_the_role_is_read_from_the_database_each_request(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        logged_in(client, "root")
        assert client.get("/admin/policy").status_code == 200
        with client.app.state.runtime.engine.begin() as conn:
            conn.execute(update(User).where(User.name == "root").values(role="reviewer"))
        assert client.get("/admin/policy").status_code == 403


def test_processes_starting_together_on_a_new_database_share_one_session_secret(tmp_path, db_url):
    """The first start with several workers: one stores the secret while another is storing it too. Each
    must come up with the same secret, not a UNIQUE error (which crashed a worker at start)."""
    settings = settings_for(tmp_path, db_url)
    upgrade(settings.database_url)
    first, second = make_engine(settings.database_url), make_engine(settings.database_url)
    with Session(first) as holder:
        mine = shared_secret(session=holder, name="session_secret")  # stored, not yet committed
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(lambda: _secret_of(second))
            time.sleep(0.5)  # the other process is now waiting on this one's write
            assert not other.done()
            holder.commit()
            assert other.result(timeout=30) == mine
    assert _secret_of(first) == mine  # and a later start reads the same one
    first.dispose()
    second.dispose()


def _secret_of(engine: Engine) -> str:
    with Session(engine) as session:
        value = shared_secret(session=session, name="session_secret")
        session.commit()
    return value
