"""Admin tables at tablet width (820 px) in Chromium: every column is on screen, and a table too wide for its
screen shows a shadow at the edge it scrolls to."""

from __future__ import annotations

import httpx
import pytest

from decider.config import load_settings
from helpers import AMBIGUOUS, PASSWORD, SETOSA, model_versions, seed_credentials, server, write_config

pytestmark = pytest.mark.browser
PAGES = ("/admin/models", "/admin/policy", "/monitoring", "/admin/users")
# Each table's wrapper: how wide its content is against how wide it shows, and the right-edge cue.
WRAPS = """() => [...document.querySelectorAll('.table-wrap')].map(w => ({
  table: (w.querySelector('table') || {}).id, scroll: w.scrollWidth, shown: w.clientWidth,
  image: getComputedStyle(w).backgroundImage, attachment: getComputedStyle(w).backgroundAttachment}))"""


def test_admin_tables_fit_at_820_px_and_wider_ones_show_a_cue(tmp_path, browser):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", models_dir=model_versions(tmp_path),
                          models='candidate = "iris-v4"\ncanary_percent = 20\nshadow = ["iris-v2"]')
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            for i in range(40):
                client.post("/api/v1/cases", json={"features": AMBIGUOUS if i % 3 else SETOSA, "key": f"k{i}"})
        page = browser.new_context(viewport={"width": 820, "height": 1000}).new_page()
        page.goto(base + "/login?next=/admin/models")
        page.fill("#name", "root")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/admin/models")
        for path in PAGES:
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            wraps = page.evaluate(WRAPS)
            assert wraps, path
            clipped = [w["table"] for w in wraps if w["scroll"] > w["shown"] + 1]
            assert clipped == [], (path, wraps)  # no column hidden in a sideways scroll
            assert page.evaluate("document.documentElement.scrollWidth") <= 820, path

        page.set_viewport_size({"width": 560, "height": 1000})  # narrower than a phone held sideways
        page.goto(base + "/admin/models")
        figures = next(w for w in page.evaluate(WRAPS) if w["table"] == "figures")
        assert figures["scroll"] > figures["shown"]  # it scrolls here, and so it must say so
        assert figures["image"].count("radial-gradient") == 2, figures  # the edge shadows
        assert figures["attachment"] == "local, local, scroll, scroll", figures  # covered where nothing is hidden
        page.close()
