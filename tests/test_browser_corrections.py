"""Undo and corrections in a real headless Chromium: U takes back the decision just made, an admin corrects a
decided case with a note, and the history keeps every step."""

from __future__ import annotations

import httpx
import pytest

from decider.config import load_settings
from helpers import AMBIGUOUS, SETOSA, seed_credentials, server, write_config
from test_browser_smoke import login

pytestmark = pytest.mark.browser


def test_u_undoes_and_an_admin_corrects_with_a_note(tmp_path, browser):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    key = seed_credentials(load_settings(config))
    headers = {"Authorization": f"Bearer {key}"}
    with server(config) as base:
        first, second = (httpx.post(base + "/api/v1/cases", json={"features": AMBIGUOUS}, headers=headers).json()
                         for _ in range(2))
        auto = httpx.post(base + "/api/v1/cases", json={"features": SETOSA}, headers=headers).json()
        page = browser.new_page()
        login(page, base, "alice")
        page.keyboard.press("n")
        page.wait_for_url(f"{base}/review/cases/{first['id']}")
        page.keyboard.press("3")  # virginica, the third class
        page.wait_for_url(f"{base}/review/cases/{second['id']}")
        assert "virginica" in page.locator("#undo-form").inner_text()
        page.keyboard.press("u")
        page.wait_for_url(f"{base}/review/cases/{first['id']}")
        assert "decision undone" in page.locator("[role=status]").first.inner_text()
        assert page.locator("#decide-form").is_visible()  # hers to decide again
        kinds = page.locator("#history td:nth-child(2)").all_inner_texts()
        assert kinds[-2:] == ["decided", "undone"]
        got = httpx.get(f"{base}/api/v1/cases/{first['id']}", headers=headers).json()
        assert got["status"] == "pending"
        page.close()

        admin = browser.new_page()
        login(admin, base, "root")
        admin.goto(f"{base}/review/cases/{auto['id']}")
        admin.click("#correct summary")
        admin.select_option("#correct-label", "versicolor")
        admin.click("#correct-submit")  # no note: the browser refuses the empty required field
        assert admin.url == f"{base}/review/cases/{auto['id']}"
        assert httpx.get(f"{base}/api/v1/cases/{auto['id']}", headers=headers).json()["decision"] == "setosa"
        admin.fill("#correct-note", "the lab result came back")
        admin.click("#correct-submit")
        admin.wait_for_selector("text=corrected to versicolor")
        row = admin.locator("#history tr", has_text="corrected").inner_text()
        assert "root" in row and "from: setosa" in row and "the lab result came back" in row
        got = httpx.get(f"{base}/api/v1/cases/{auto['id']}", headers=headers).json()
        assert (got["decision"], got["decided_by"]) == ("versicolor", "root")
        admin.close()
