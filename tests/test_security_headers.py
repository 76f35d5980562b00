"""Security headers on every response, pages with no inline code or style (so the CSP blocks nothing of
ours), the report still self-contained, and `server.docs = false` hiding /docs and /openapi.json."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from decider.monitoring.report import write_report
from decider.web.headers import CONTENT_SECURITY_POLICY
from helpers import AMBIGUOUS, ROOT, SETOSA, api, settings_for, submit
from review_helpers import logged_in

EXPECTED = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
STATIC_JS = ROOT / "src" / "decider" / "static"
# What a strict CSP blocks: a <script> without src that is not a data block, a <style> element, a style
# attribute, an inline event handler, a javascript: URL.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
BLOCKED = [INLINE_SCRIPT, re.compile(r"<style\b", re.I), re.compile(r"\sstyle\s*=", re.I),
           re.compile(r"\son[a-z]+\s*=", re.I), re.compile(r"javascript:", re.I)]


def assert_secure(response) -> None:  # type: ignore[no-untyped-def]
    for name, value in EXPECTED.items():
        assert response.headers.get_list(name) == [value], (response.request.url, name, response.headers)


def blocked_in(html: str) -> list[str]:
    return [m[0] for pattern in BLOCKED for m in pattern.finditer(html)]


def test_csp_is_strict():
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives == {"default-src": "'self'", "img-src": "'self' data:", "frame-ancestors": "'none'",
                          "base-uri": "'self'", "form-action": "'self'", "object-src": "'none'"}
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_every_kind_of_response_carries_the_headers(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        assert_secure(client.get("/login"))  # a page
        created = client.post("/api/v1/cases", json={"features": SETOSA}, headers=h)
        assert created.status_code == 201
        assert_secure(created)  # an API answer
        assert_secure(client.get("/healthz"))
        assert_secure(client.get("/api/v1/cases/999999", headers=h))  # a JSON 404
        missing_page = client.get("/no/such/page")
        assert missing_page.status_code == 404
        assert_secure(missing_page)
        assert_secure(client.get("/api/v1/cases/1"))  # 401: no key
        too_big = client.post("/api/v1/cases", content=b"x" * 70_000, headers=h | {"Content-Type": "application/json"})
        assert too_big.status_code == 413
        assert_secure(too_big)  # refused by BodyLimit, before any route
        css = client.get("/static/decider.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert_secure(css)  # a static file
        assert_secure(client.get("/static/monitoring.js"))
        assert_secure(client.get("/favicon.ico", follow_redirects=False))  # a redirect
        assert_secure(client.get("/metrics"))
        assert_secure(client.get("/docs"))


def test_templates_have_no_inline_code_or_style():
    """Every template served as a page; report.html is a standalone file (no CSP) and inlines on purpose."""
    for template in sorted((ROOT / "templates").glob("*.html")):
        if template.name != "report.html":
            assert blocked_in(template.read_text()) == [], template.name
    for script in STATIC_JS.glob("*.js"):  # our own scripts: no inline handlers written into markup
        text = script.read_text()
        assert "innerHTML" not in text and "javascript:" not in text and "eval(" not in text, script.name


def test_rendered_pages_have_no_inline_code_or_style(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, level="assist")) as (client, h):
        submit(client, h, SETOSA)
        case_id = submit(client, h, AMBIGUOUS)["id"]
        logged_in(client, "root")
        for path in ("/review", f"/review/cases/{case_id}", "/monitoring", "/admin/models", "/admin/policy",
                     "/review/cases/999999", "/docs"):
            page = client.get(path)
            assert page.headers["content-type"].startswith("text/html"), path
            assert blocked_in(page.text) == [], path
            assert_secure(page)
        case = client.get(f"/review/cases/{case_id}").text
        assert re.search(r'<progress class="bar ok" max="1" value="0\.6\d+"', case)  # the suggested class's bar
        monitoring = client.get("/monitoring").text
        assert '<script src="/static/monitoring.js"></script>' in monitoring
        assert monitoring.index('id="monitoring-figures"') < monitoring.index('src="/static/monitoring.js"')
        docs = client.get("/docs").text
        assert '<script src="/static/vendor/swagger-ui-bundle.js"></script>' in docs
        assert '<script src="/static/docs.js"></script>' in docs
        assert client.get("/static/docs.js").status_code == 200
        assert "/api/v1/cases" in client.get("/openapi.json").json()["paths"]


def test_the_report_inlines_the_chart_script(tmp_path, sqlite_url):
    settings = settings_for(tmp_path, sqlite_url)
    with api(settings) as (client, h):
        submit(client, h, SETOSA)
    out = tmp_path / "report.html"
    write_report(settings=settings, since=datetime(2020, 1, 1, tzinfo=UTC), until=None, out=out)
    html = out.read_text()
    script = (STATIC_JS / "monitoring.js").read_text()
    assert script in html and "</script" not in script  # inlined whole, and cannot end its element early
    assert html.index('id="monitoring-figures"') < html.index(script)  # runs after the data it reads
    assert 'src="/static/monitoring.js"' not in html


def test_docs_switched_off(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, extra="[server]\ndocs = false\n")) as (client, h):
        for path in ("/docs", "/openapi.json"):
            hidden = client.get(path)
            assert hidden.status_code == 404, path
            assert_secure(hidden)
        assert client.post("/api/v1/cases", json={"features": SETOSA}, headers=h).status_code == 201

