"""An unknown URL: a browser gets a page saying so with a way back; API clients keep their JSON."""

from __future__ import annotations

import pytest

from decider.config import load_settings
from helpers import api, seed_credentials, server, settings_for, write_config
from review_helpers import logged_in

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_gets_a_page_and_an_api_client_json(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        for path in ("/no/such/page", "/admin/nope", "/healthz/x", "/static/nope.css"):
            page = client.get(path, headers={"Accept": BROWSER_ACCEPT})
            assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), path
            assert "Page not found" in page.text and 'href="/login"' in page.text, path
        for path in ("/api/v1/nope", "/api/v1/cases/1/nope"):  # under /api/: JSON whatever the client accepts
            answer = client.get(path, headers={"Accept": BROWSER_ACCEPT, **h})
            assert answer.status_code == 404 and answer.json()["detail"] == f"{path}: no such page or API route"
        asked_json = client.get("/no/such/page", headers={"Accept": "application/json"})
        assert asked_json.status_code == 404 and asked_json.json()["field"] is None

        logged_in(client, "root")
        page = client.get("/no/such/page", headers={"Accept": BROWSER_ACCEPT})
        assert page.status_code == 404 and 'href="/review"' in page.text and 'href="/admin/users"' in page.text
        assert "root (admin)" in page.text  # the navigation, for whoever is logged in


@pytest.mark.browser
def test_the_way_back_in_a_browser(tmp_path, browser):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    seed_credentials(load_settings(config))
    with server(config) as base:
        page = browser.new_page()
        response = page.goto(base + "/somewhere/else")
        assert response is not None and response.status == 404
        assert page.locator("h1").inner_text() == "Page not found"
        page.click("text=Log in")
        page.wait_for_url(base + "/login")
        page.close()
