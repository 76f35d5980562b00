"""Why the model suggests it, and precedent, on the case page in a real Chromium against a real server: shown at
assist and partial, absent at shadow and on a blind audit (where the suggestion is hidden too)."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from decider.config import load_settings
from helpers import AMBIGUOUS, SETOSA, review_headers, seed_credentials, server, write_config
from test_browser_review import LAPTOP, TABLET, reviewer

pytestmark = pytest.mark.browser
EARLIER = {"sepal length (cm)": 6.1, "petal width (cm)": 1.55}


def decided_by_a_person(base: str, headers: dict[str, str], review: dict[str, str]) -> int:
    """A case decided by bob over the review API, once this server's precedent index holds it."""
    case_id = httpx.post(base + "/api/v1/cases", json={"features": EARLIER}, headers=headers).json()["id"]
    assert httpx.post(f"{base}/api/v1/review/cases/{case_id}/claim", headers=review).status_code == 200
    assert httpx.post(f"{base}/api/v1/review/cases/{case_id}/resolve", headers=review,
                      json={"label": "virginica"}).status_code == 200
    return case_id


@pytest.mark.parametrize(("level", "automation", "features", "shown"), [
    ("assist", "", AMBIGUOUS, True),
    ("partial", "", AMBIGUOUS, True),
    ("shadow", "", AMBIGUOUS, False),
    ("partial", "audit_rate = 1.0", SETOSA, False),
], ids=["assist", "partial", "shadow", "blind-audit"])
def test_explanation_and_precedent_only_where_the_suggestion_shows(tmp_path, browser, level, automation, features,
                                                                   shown):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", level=level, automation=automation,
                          extra="[server]\nreload_seconds = 0.5\n")
    settings = load_settings(config)
    key = seed_credentials(settings)
    review = review_headers(settings, "bob")
    with server(config) as base:
        headers = {"Authorization": f"Bearer {key}"}
        earlier = decided_by_a_person(base, headers, review)
        case_id = httpx.post(base + "/api/v1/cases", json={"features": features}, headers=headers).json()["id"]
        deadline = time.monotonic() + 20
        while shown and time.monotonic() < deadline:  # the background tick rebuilds the index
            read = httpx.get(f"{base}/api/v1/review/cases/{case_id}", headers=review).json()
            if read["precedents"]:
                break
            time.sleep(0.2)
        page = reviewer(browser, base, "alice")
        page.click("#next-case")
        page.wait_for_url(f"{base}/review/cases/{case_id}")
        if not shown:
            assert page.locator("#suggestion").count() == 0
            assert page.locator("#explanation").count() == 0 and page.locator("#precedents").count() == 0
            body = page.locator("main").inner_text()
            assert "Similar cases" not in body and "rather than" not in body and f"#{earlier}" not in body
            return
        why = page.locator("#explanation")
        assert why.is_visible()
        suggested = page.locator("#suggestion-h strong").inner_text()
        assert why.locator("h2").inner_text().startswith(f"Why {suggested} rather than ")
        rows = page.locator("#explanation-table tbody tr")
        assert rows.count() == 2
        assert {rows.nth(i).locator("td").first.inner_text() for i in range(2)} == {"sepal length (cm)",
                                                                                   "petal width (cm)"}
        assert "Exact for this linear model" in why.inner_text()
        page.set_viewport_size(TABLET)  # the new cards fit a tablet, their tables inside them
        page.reload()
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        for part in ("#explanation-table", "#precedent-table"):
            spill = page.evaluate(f"""(() => {{ const e = document.querySelector('{part}');
                return e.getBoundingClientRect().right - e.closest('.card').getBoundingClientRect().right; }})()""")
            assert spill <= 0, f"{part} sticks {spill}px out of its card at {TABLET['width']}px"
        if "SCREENSHOT_TO" in os.environ:
            page.set_viewport_size(LAPTOP)
            page.screenshot(path=os.environ["SCREENSHOT_TO"], full_page=True)
        link = page.locator(f"#precedent-table a[href='/review/cases/{earlier}']")
        assert link.is_visible()
        assert "virginica" in page.locator("#precedent-table").inner_text()
        assert "bob" in page.locator("#precedent-table").inner_text()
        link.click()
        page.wait_for_url(f"{base}/review/cases/{earlier}")
        assert "Decision <strong>virginica</strong> by bob" in page.content()
        assert all(url.startswith(base) for url in page.requests)
