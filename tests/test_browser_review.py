"""The reviewer's workbench in a real headless Chromium against a real server process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from decider.config import load_settings
from helpers import AMBIGUOUS, PASSWORD, seed_credentials, server, write_config

pytestmark = pytest.mark.browser
LAPTOP, TABLET = {"width": 1366, "height": 900}, {"width": 768, "height": 1024}
FLOWERS = [{"sepal length (cm)": 5.5 + i / 10, "petal width (cm)": 1.3 + i / 20} for i in range(6)]


@contextmanager
def workbench(tmp_path, level: str = "assist", cases: list[dict] | None = None) -> Iterator[tuple[str, list[int]]]:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", level=level)
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        headers = {"Authorization": f"Bearer {key}"}
        ids = [httpx.post(base + "/api/v1/cases", json={"features": f}, headers=headers).json()["id"]
               for f in cases or FLOWERS]
        yield base, ids


def reviewer(browser, base: str, name: str, viewport: dict | None = None):  # type: ignore[no-untyped-def]
    """A logged-in page in its own browser context (its own cookies), recording every request it makes."""
    page = browser.new_context(viewport=viewport or LAPTOP).new_page()
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(base + "/review")
    page.wait_for_url(f"{base}/login?next=%2Freview")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/review")
    return page


def case_id_of(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.url.rsplit("/", 1)[1])


def test_next_case_decide_by_keyboard_and_skip(tmp_path, browser):
    with workbench(tmp_path, cases=FLOWERS[:3]) as (base, ids):
        page = reviewer(browser, base, "alice")
        assert page.locator("#pending-count").inner_text() == "3"
        page.keyboard.press("n")
        page.wait_for_url(f"{base}/review/cases/{ids[0]}")
        assert "Model suggests" in page.locator("#suggestion").inner_text()  # assist: the suggestion shows
        page.fill("#note", "typed 1 2 3 s here")  # digits in the note are text, not decisions
        assert page.url.endswith(f"/cases/{ids[0]}")
        page.keyboard.press("Escape")
        page.keyboard.press("3")  # the third class: virginica
        page.wait_for_url(f"{base}/review/cases/{ids[1]}")  # straight on to the next case
        assert f"Case #{ids[0]} decided: virginica." in page.locator(".flash").inner_text()
        page.keyboard.press("s")
        page.wait_for_url(f"{base}/review/cases/{ids[2]}")
        assert "skipped" in page.locator(".flash").inner_text()
        history = page.locator("#history").inner_text()
        assert "claimed" in history and "alice" in history
        page.keyboard.press("1")
        page.wait_for_url(f"{base}/review/cases/{ids[1]}")  # the skipped case comes round again
        page.keyboard.press("2")
        page.wait_for_url(base + "/review")
        assert page.locator("#pending-count").inner_text() == "0"
        decided = page.context.request.get(f"{base}/review/cases/{ids[0]}").text()
        assert "Decision <strong>virginica</strong> by alice" in decided and "typed 1 2 3 s here" in decided
        assert all(url.startswith(base) for url in page.requests), "the pages made an external request"


def test_shadow_level_case_shows_no_suggestion(tmp_path, browser):
    with workbench(tmp_path, level="shadow", cases=[AMBIGUOUS]) as (base, ids):
        page = reviewer(browser, base, "bob")
        page.click("#next-case")
        page.wait_for_url(f"{base}/review/cases/{ids[0]}")
        assert page.locator("#suggestion").count() == 0
        assert page.locator("#no-suggestion").is_visible()
        body = page.locator("main").inner_text()
        assert "confidence" not in body.lower() and "versicolor" not in body.split("Decision")[0]
        page.goto(base + "/review?sort=confidence")
        assert page.locator("#queue tbody tr td").nth(3).inner_text() == "hidden"


def test_two_reviewers_at_once_never_get_the_same_case(tmp_path, browser):
    with workbench(tmp_path) as (base, ids):
        alice, bob = reviewer(browser, base, "alice"), reviewer(browser, base, "bob")
        seen: dict[str, list[int]] = {"alice": [], "bob": []}
        active, last = {"alice": alice, "bob": bob}, {"alice": alice.url, "bob": bob.url}  # both on /review
        for page in (alice, bob):  # both press Next case without waiting for the other
            page.click("#next-case", no_wait_after=True)
        while active:  # each decides what they were given and is sent on, both at once, until none is left
            for name, page in list(active.items()):
                page.wait_for_url(lambda url, prev=last[name]: url != prev)
                last[name] = page.url
                if "/cases/" not in page.url:
                    del active[name]
                    continue
                seen[name].append(case_id_of(page))
                page.keyboard.press("1")
        assert not set(seen["alice"]) & set(seen["bob"])
        assert sorted(seen["alice"] + seen["bob"]) == ids
        assert seen["alice"] and seen["bob"]


@pytest.mark.parametrize("viewport", [LAPTOP, TABLET], ids=["laptop", "tablet"])
def test_pages_fit_laptop_and_tablet_widths(tmp_path, browser, viewport):
    with workbench(tmp_path, cases=FLOWERS[:2]) as (base, ids):
        page = reviewer(browser, base, "alice", viewport)
        for path in ("/review", f"/review/cases/{ids[0]}"):
            page.goto(base + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a {viewport['width']}px screen"
        for part in ("#features", "#suggestion", "#decide-form", "#history"):  # nothing spills out of its card
            spill = page.evaluate(f"""(() => {{ const e = document.querySelector('{part}');
                return e.getBoundingClientRect().right - e.closest('.card').getBoundingClientRect().right; }})()""")
            assert spill <= 0, f"{part} sticks {spill}px out of its card at {viewport['width']}px"
        buttons = page.locator("#decide-form button")
        assert buttons.count() == 3 and all(buttons.nth(i).is_visible() for i in range(3))
        page.keyboard.press("Tab")  # keyboard focus lands on something visible
        assert page.evaluate("document.activeElement && document.activeElement.tagName") in ("A", "BUTTON", "INPUT")
        assert all(url.startswith(base) for url in page.requests)
