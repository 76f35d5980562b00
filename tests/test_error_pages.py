"""Errors on pages are pages for people; on the API they are JSON naming the field."""

from __future__ import annotations

from helpers import PASSWORD, api, settings_for


def test_page_errors_render_a_page_and_api_errors_stay_json(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        form = client.get("/login").text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        client.post("/login", data={"name": "alice", "password": PASSWORD, "csrf": csrf})
        missing = client.get("/review/cases/424242")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert "424242" in missing.text and "<form" in missing.text  # the nav, with its logout form
        api_missing = client.get("/api/v1/cases/424242", headers=h)
        assert api_missing.status_code == 404 and api_missing.json()["detail"] == "no case 424242"
