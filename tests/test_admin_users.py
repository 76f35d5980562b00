"""`/admin/users`: admins manage logins and keys in the browser through the CLI's own functions; a new key is
shown once; every change is recorded with who made it; only admins, only with the form token."""

from __future__ import annotations

import re

import httpx
import pytest

from decider.config import load_settings
from helpers import PASSWORD, SETOSA, api, seed_credentials, server, settings_for, write_config
from review_helpers import logged_in, login
from test_deploy import decider

NEW_PASSWORD = "a new password, long enough"


def history(client) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    html = client.get("/admin/users").text.split('id="account-history"', 1)[1]
    cells = re.findall(r'<td data-label="By">(.*?)</td><td data-label="Change">(.*?)</td>\s*'
                       r'<td data-label="Of">(.*?)</td>', html)
    return [tuple(c) for c in cells]


def new_key(html: str) -> str:
    match = re.search(r'<code id="new-key">([^<]+)</code>', html)
    assert match, "no new key on the page"
    return match[1]


def test_a_client_key_is_shown_once_and_works(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, _):
        csrf = logged_in(client, "root")
        made = client.post("/admin/users/keys/create", data={"csrf": csrf, "name": "shop"})
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        key = new_key(made.text)
        listing = client.get("/admin/users").text
        assert key not in listing and key[:10] in listing  # the prefix, never the key again
        shop = {"Authorization": f"Bearer {key}"}
        assert client.post("/api/v1/cases", json={"features": SETOSA}, headers=shop).status_code == 201
        again = client.post("/admin/users/keys/create", data={"csrf": csrf, "name": "shop"})
        assert again.status_code == 409 and "already has a live key" in again.text

        rotated = new_key(client.post("/admin/users/keys/rotate", data={"csrf": csrf, "name": "shop"}).text)
        assert client.get("/api/v1/cases", headers={"Authorization": f"Bearer {rotated}"}).status_code == 200
        revoked = client.post("/admin/users/keys/revoke", data={"csrf": csrf, "name": "shop", "scope": "client"})
        assert revoked.status_code == 200 and "Revoked the key of client shop" in revoked.text
        bad = client.post("/admin/users/keys/create", data={"csrf": csrf, "name": "two words"})
        assert bad.status_code == 422 and "client &#39;two words&#39;" in bad.text
        assert history(client)[:3] == [("root", "key revoked", "shop"), ("root", "key rotated", "shop"),
                                       ("root", "key created", "shop")]


def test_logins_added_disabled_and_given_a_password(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (admin, _):
        csrf = logged_in(admin, "root")
        form = {"csrf": csrf, "name": "maria", "role": "reviewer", "password": PASSWORD, "password_again": PASSWORD}
        assert admin.post("/admin/users/add", data=form).status_code == 200
        differ = admin.post("/admin/users/add", data={**form, "name": "kim", "password_again": "something else"})
        assert differ.status_code == 422 and "password_again" in differ.text
        short = admin.post("/admin/users/add",
                           data={**form, "name": "kim", "password": "short", "password_again": "short"})
        assert short.status_code == 422 and "at least 8 characters" in short.text
        self_disable = admin.post("/admin/users/disable", data={"csrf": csrf, "name": "root"})
        assert self_disable.status_code == 409

        from fastapi.testclient import TestClient

        with TestClient(admin.app) as maria:
            logged_in(maria, "maria")
            assert maria.get("/review").status_code == 200
            admin.post("/admin/users/disable", data={"csrf": csrf, "name": "maria"})
            ended = maria.get("/review", follow_redirects=False)
            assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
            assert login(maria, "maria").status_code == 401
            admin.post("/admin/users/enable", data={"csrf": csrf, "name": "maria"})
            admin.post("/admin/users/password", data={"csrf": csrf, "name": "maria", "password": NEW_PASSWORD,
                                                      "password_again": NEW_PASSWORD})
            assert login(maria, "maria").status_code == 401  # the old password no longer works
            assert login(maria, "maria", NEW_PASSWORD).status_code == 303
        assert history(admin)[:4] == [("root", "password set", "maria"), ("root", "enabled", "maria"),
                                      ("root", "disabled", "maria"), ("root", "user added", "maria")]
        assert all(h[0].startswith("cli:") for h in history(admin)[4:])  # the test logins, added on this machine


def test_command_line_changes_are_recorded_as_cli_user(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url)
    with api(load_settings(config)) as (client, _):
        assert decider(config, "keys", "create", "nightly", user="erin").returncode == 0
        logged_in(client, "root")
        assert history(client)[0] == ("cli:erin", "key created", "nightly")


def test_only_admins_with_a_form_token(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        anonymous = client.get("/admin/users", follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=%2Fadmin%2Fusers"
        csrf = logged_in(client, "alice")
        assert client.get("/admin/users").status_code == 403
        assert client.post("/admin/users/disable", data={"csrf": csrf, "name": "bob"}).status_code == 403
        client.post("/logout", data={"csrf": csrf})
        logged_in(client, "root")
        forged = client.post("/admin/users/disable", data={"csrf": "forged", "name": "bob"})
        assert forged.status_code == 403
        bob = client.get("/admin/users").text.split('id="user-bob"', 1)[1].split("</tr>", 1)[0]
        assert '<span class="badge ok">enabled</span>' in bob


@pytest.mark.browser
def test_a_new_password_works_and_a_disabled_person_is_logged_out(tmp_path, browser):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    seed_credentials(load_settings(config))
    with server(config) as base:
        admin, bob = browser.new_context().new_page(), browser.new_context().new_page()
        for page, name in ((admin, "root"), (bob, "bob")):
            page.goto(base + "/login")
            page.fill("#name", name)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/review")
        admin.click("nav a[href='/admin/users']")
        admin.wait_for_url(base + "/admin/users")
        admin.click("#user-alice summary")
        admin.fill("#user-alice input[name=password]", NEW_PASSWORD)
        admin.fill("#user-alice input[name=password_again]", NEW_PASSWORD)
        admin.click("#user-alice .password-form button[type=submit]")
        admin.wait_for_url(base + "/admin/users")
        assert "New password for alice" in admin.locator(".flash.ok").inner_text()
        alice = browser.new_context().new_page()
        alice.goto(base + "/login")
        alice.fill("#name", "alice")
        alice.fill("#password", NEW_PASSWORD)
        alice.click("button[type=submit]")
        alice.wait_for_url(base + "/review")

        admin.click("#user-bob button:has-text('Disable')")
        admin.wait_for_url(base + "/admin/users")
        assert "disabled" in admin.locator("#user-bob").inner_text()
        bob.reload()
        assert bob.url.startswith(base + "/login")
        assert httpx.get(base + "/readyz").status_code == 200
