"""The review page in a real headless Chromium: log in, open a queued case, decide it."""

from __future__ import annotations

import httpx
import pytest

from decider.config import load_settings
from helpers import AMBIGUOUS, PASSWORD, seed_credentials, server, write_config

pytestmark = pytest.mark.browser


def login(page, base: str, name: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + "/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/review")


def test_queued_case_is_resolved_in_the_page_and_read_back(tmp_path, browser):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    key = seed_credentials(load_settings(config))
    headers = {"Authorization": f"Bearer {key}"}
    with server(config) as base:
        case = httpx.post(base + "/api/v1/cases", json={"features": AMBIGUOUS}, headers=headers).json()
        assert case["status"] == "pending"
        page = browser.new_page()
        login(page, base, "alice")
        assert page.locator("#pending-count").inner_text() == "1"
        page.click("#next-case")
        page.wait_for_url(f"{base}/review/cases/{case['id']}")
        assert "versicolor" in page.locator("#suggestion").inner_text()
        page.click("#decide-form button[value=virginica]")
        page.wait_for_url(base + "/review")
        got = httpx.get(f"{base}/api/v1/cases/{case['id']}", headers=headers).json()
        assert (got["status"], got["decision"], got["decided_by"]) == ("decided", "virginica", "alice")
        page.close()
