"""/docs works with no network beyond the server: Swagger UI is vendored, not loaded from a CDN."""

from __future__ import annotations

import pytest

from helpers import server, write_config

pytestmark = pytest.mark.browser


def test_api_docs_render_from_the_server_alone(tmp_path, browser):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    with server(config) as base:
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(base + "/docs")
        page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/cases']", timeout=15_000)
        assert "decider" in page.locator(".title").first.inner_text()
        assert requests and all(url.startswith(base) for url in requests), requests
        assert page.request.get(base + "/favicon.ico").ok
        page.close()
