"""The submission form in a real headless Chromium against a real server process: a submitter submits, sees
the model decide a clear case, watches an unclear one wait and then show a reviewer's decision without
reloading, is refused a bad value beside its field, and cannot open the queue; at shadow, sees no model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlmodel import Session

from decider.auth.service import add_user, set_password
from decider.config import Settings, load_settings
from decider.db import make_engine
from decider.web.headers import CONTENT_SECURITY_POLICY
from helpers import AMBIGUOUS, PASSWORD, SETOSA, review_headers, seed_credentials, server, write_config

pytestmark = pytest.mark.browser
RECORD_VIOLATIONS = """window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective));"""


@contextmanager
def running(tmp_path, level: str) -> Iterator[tuple[str, Settings]]:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", level=level)
    settings = load_settings(config)
    seed_credentials(settings)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        add_user(session=session, name="sam", password=PASSWORD, role="submitter")
        session.commit()
    engine.dispose()
    with server(config) as base:
        yield base, settings


def logged_in(browser, base: str, name: str):  # type: ignore[no-untyped-def]
    """A page in its own context, logged in from the home page, recording requests and page problems."""
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.requests, page.problems = [], []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda exc: page.problems.append(str(exc)))
    page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
    page.goto(base + "/")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login" not in url)
    return page


def fill(page, features: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    for name, value in features.items():
        page.fill(f'[name="features.{name}"]', str(value))


def submit_case(page, base: str, features: dict[str, float]) -> int:  # type: ignore[no-untyped-def]
    page.goto(base + "/submit")
    fill(page, features)
    page.click("#submit-case")
    page.wait_for_url(f"{base}/submit/cases/*")
    return int(page.url.rsplit("/", 1)[1])


def decide_over_api(base: str, settings: Settings, case_id: int, label: str) -> None:
    headers = review_headers(settings, "alice")
    httpx.post(f"{base}/api/v1/review/cases/{case_id}/claim", headers=headers).raise_for_status()
    httpx.post(f"{base}/api/v1/review/cases/{case_id}/resolve", headers=headers,
               json={"label": label}).raise_for_status()


def assert_clean(page, base: str) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate("() => window.__csp") == [] and page.problems == [], page.problems
    assert all(url.startswith(base) for url in page.requests), "the pages made an external request"


def test_a_submitter_submits_watches_and_is_kept_to_the_form(tmp_path, browser):
    with running(tmp_path, "partial") as (base, settings):
        page = logged_in(browser, base, "sam")
        assert page.url == base + "/submit"  # lands on the form
        assert page.locator("nav a[href='/review']").count() == 0
        assert page.locator("#f0-hint").inner_text() == "Seen in training: 4.3 to 7.9."

        # The page's own check: a required field left empty is not even sent.
        fill(page, {"petal width (cm)": 0.2})
        page.click("#submit-case")
        assert page.url == base + "/submit"
        assert page.evaluate("() => document.querySelector('#f0').validity.valueMissing")
        # The server's check, with the page's switched off: the API's message, beside the field it names.
        page.evaluate("() => { document.querySelector('#submit-form').noValidate = true; }")
        page.click("#submit-case")
        page.wait_for_load_state("load")
        assert page.locator("#f0-error").inner_text() == \
            "features.sepal length (cm): missing (the live model needs it as a number)"
        assert page.locator("#f0").get_attribute("aria-invalid") == "true"
        assert page.locator("#f3").input_value() == "0.2"  # what was typed is kept
        assert page.problems == ["Failed to load resource: the server responded with a status of 422 "
                                 "(Unprocessable Entity)"]  # the refusal itself, and nothing else
        page.problems.clear()

        # Try: what the model would do, nothing stored.
        fill(page, AMBIGUOUS)
        page.click("#try-case")
        page.wait_for_selector("#try-result")
        assert page.locator("#try-prediction").inner_text() == "versicolor"
        assert "Nothing submitted yet." in page.locator("#recent").inner_text()

        clear = submit_case(page, base, SETOSA)
        assert page.locator("#decision").inner_text() == "setosa"
        assert "Decided by the model" in page.locator("#case-status").inner_text()

        unclear = submit_case(page, base, AMBIGUOUS)
        assert page.locator("#waiting").inner_text() == "Waiting for review"
        page.evaluate("() => { window.__same_page = true; }")
        decide_over_api(base, settings, unclear, "virginica")
        page.wait_for_selector("#decision", timeout=15_000)  # the page asks again on its own
        assert page.locator("#decision").inner_text() == "virginica"
        assert "Decided by alice" in page.locator("#case-status").inner_text()
        assert page.evaluate("() => window.__same_page") is True  # swapped in, not reloaded
        assert_clean(page, base)

        page.goto(base + "/submit")
        recent = page.locator("#recent").inner_text()
        assert f"#{clear}" in recent and f"#{unclear}" in recent and "virginica" in recent
        response = page.goto(base + "/review")
        assert response is not None and response.status == 403
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.locator("a[href='/submit']").count() >= 1  # the way back to what it may use


def test_at_shadow_the_submitter_sees_no_model(tmp_path, browser):
    with running(tmp_path, "shadow") as (base, settings):
        page = logged_in(browser, base, "sam")
        assert page.locator("#try-case").count() == 0
        case_id = submit_case(page, base, SETOSA)
        status = page.locator("#case-status").inner_text()
        assert "Waiting for review" in status
        body = page.locator("main").inner_text()
        for leak in ("setosa", "versicolor", "virginica", "iris-v1", "onfidence"):
            assert leak not in body, leak
        assert page.locator("#model-output").count() == 0

        reviewer = logged_in(browser, base, "alice")  # a reviewer on the review pages decides it
        reviewer.click("#next-case")
        reviewer.wait_for_url(f"{base}/review/cases/{case_id}")
        reviewer.keyboard.press("1")  # setosa
        reviewer.wait_for_url(base + "/review")

        page.wait_for_selector("#decision", timeout=15_000)
        assert page.locator("#decision").inner_text() == "setosa"
        assert "iris-v1" not in page.locator("main").inner_text()
        assert_clean(page, base)

        # The session ends while a page waits (a new password ends every session): its next poll reloads the
        # page, which asks for a login and would come back to the case.
        waiting = submit_case(page, base, AMBIGUOUS)
        engine = make_engine(settings.database_url)
        with Session(engine) as session:
            set_password(session=session, name="sam", password=PASSWORD + "!")
            session.commit()
        engine.dispose()
        page.wait_for_url(f"{base}/login?next=%2Fsubmit%2Fcases%2F{waiting}", timeout=15_000)
