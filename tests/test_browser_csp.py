"""Every page in a real headless Chromium under the server's Content-Security-Policy: nothing is blocked,
the monitoring charts still draw and /docs still lists the operations."""

from __future__ import annotations

import httpx
import pytest

from decider.config import load_settings
from decider.web.headers import CONTENT_SECURITY_POLICY
from helpers import AMBIGUOUS, PASSWORD, SETOSA, seed_credentials, server, write_config

pytestmark = pytest.mark.browser
SCREENSHOTS = {"case": "/tmp/decider-csp-case.png", "docs": "/tmp/decider-csp-docs.png"}
# Records violations as the page sees them (Playwright injects this outside the page's CSP).
RECORD_VIOLATIONS = """window.__csp = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI || 'inline'} ${e.sourceFile}:${e.lineNumber}`));"""


class Watched:
    """A page in its own browser context that records CSP complaints, script errors and console errors."""

    def __init__(self, browser, base: str) -> None:  # type: ignore[no-untyped-def]
        self.base = base
        self.page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.page.add_init_script(RECORD_VIOLATIONS)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def _console(self, message) -> None:  # type: ignore[no-untyped-def]
        if "Content Security Policy" in message.text or message.type == "error":
            self.problems.append(f"console {message.type}: {message.text}")

    def open(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.ok, path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path

    def login(self, name: str, then: str) -> None:
        self.open(f"/login?next={then}")
        self.page.fill("#name", name)
        self.page.fill("#password", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + then)

    def assert_clean(self, where: str) -> None:
        self.page.wait_for_load_state("load")
        seen = self.page.evaluate("() => window.__csp")
        assert seen == [] and self.problems == [], (where, seen, self.problems)


def test_every_page_runs_under_the_csp(tmp_path, browser):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            for features in [SETOSA] * 4 + [AMBIGUOUS] * 3:
                client.post("/api/v1/cases", json={"features": features}).raise_for_status()

        reviewer = Watched(browser, base)
        reviewer.login("alice", "/review")
        reviewer.assert_clean("login, then the queue")
        assert reviewer.page.locator("#pending-count").inner_text() == "3"
        reviewer.page.click("#next-case")
        reviewer.page.wait_for_url(f"{base}/review/cases/*")
        reviewer.assert_clean("case page")
        bars = reviewer.page.evaluate("""() => [...document.querySelectorAll('#suggestion progress.bar')].map(b =>
          ({value: b.value, width: b.getBoundingClientRect().width, height: b.getBoundingClientRect().height}))""")
        assert len(bars) == 3 and all(b["width"] > 50 and b["height"] > 5 for b in bars), bars
        assert 0.6 < max(b["value"] for b in bars) < 0.7, bars  # versicolor at ~0.65
        reviewer.page.screenshot(path=SCREENSHOTS["case"], full_page=True)
        first = reviewer.page.url
        reviewer.page.keyboard.press("3")  # review.js still drives the keyboard
        reviewer.page.wait_for_url(lambda url: url != first and "/review/cases/" in url)
        reviewer.assert_clean("the next case, after deciding by key")

        admin = Watched(browser, base)
        admin.login("root", "/monitoring")
        admin.page.wait_for_selector("html[data-charts-ready=yes]")
        admin.assert_clean("monitoring")
        charts = admin.page.evaluate("""() => [...document.querySelectorAll('canvas[data-chart]')].map(c =>
          ({id: c.id, chart: !!Chart.getChart(c), width: c.width, height: c.height}))""")
        assert len(charts) == 7, charts
        assert all(c["chart"] and c["width"] > 100 and c["height"] > 100 for c in charts), charts
        for path in ("/admin/models", "/admin/policy", "/review"):
            admin.open(path)
            admin.assert_clean(path)

        admin.open("/docs")
        admin.page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/cases']", timeout=15_000)
        operations = admin.page.locator(".opblock").count()
        assert operations >= 10, operations
        assert "decider" in admin.page.locator(".title").first.inner_text()
        admin.page.locator(".opblock-summary").first.click()  # an operation opens (React, under the CSP)
        admin.page.wait_for_selector(".opblock.is-open .opblock-body")
        admin.assert_clean("/docs")
        admin.page.screenshot(path=SCREENSHOTS["docs"], full_page=False)

        assert all(url.startswith(base) for url in reviewer.requests + admin.requests)
        reviewer.page.context.close()
        admin.page.context.close()


def test_the_watch_sees_a_violation(tmp_path, browser):
    """The check above would pass vacuously if violations went unseen: an injected inline script is seen."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    with server(config) as base:
        watched = Watched(browser, base)
        watched.open("/login")
        watched.page.evaluate("""() => { const s = document.createElement('script');
          s.textContent = 'window.ran = true'; document.body.append(s); }""")
        watched.page.wait_for_function("() => window.__csp.length > 0")
        assert watched.page.evaluate("() => window.ran") is None
        assert any("Content Security Policy" in p for p in watched.problems), watched.problems
        watched.page.context.close()
