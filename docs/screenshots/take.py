"""Take docs/screenshots/case.png: the case page at 1366x900 in headless Chromium, on a throwaway database.

    python docs/screenshots/take.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from decider.config import load_settings  # noqa: E402
from helpers import PASSWORD, seed_credentials, server, write_config  # noqa: E402

FLOWERS = [{"sepal length (cm)": 6.0, "petal width (cm)": 1.6}, {"sepal length (cm)": 8.2, "petal width (cm)": 1.7},
           {"sepal length (cm)": 6.3, "petal width (cm)": 1.5}]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), f"sqlite:///{tmp}/d.db", level="partial")
        key = seed_credentials(load_settings(config))
        with server(config) as base, sync_playwright() as p:
            headers = {"Authorization": f"Bearer {key}"}
            for features in FLOWERS:
                httpx.post(base + "/api/v1/cases", json={"features": features}, headers=headers).raise_for_status()
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(base + "/login")
            page.fill("#name", "alice")
            page.fill("#password", PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url(base + "/review")
            page.click("#next-case")  # the first case, decided: on to the second, which is the one to show
            page.wait_for_url(base + "/review/cases/1")
            page.fill("#note", "Petals look longer than usual")
            page.click("#decide-form button[value=versicolor]")
            page.wait_for_url(base + "/review/cases/2")
            page.screenshot(path=str(HERE / "case.png"), full_page=False)
            browser.close()
    print(HERE / "case.png")


if __name__ == "__main__":
    main()
