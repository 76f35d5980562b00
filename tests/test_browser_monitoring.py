"""The monitoring page in a real headless Chromium: every chart drawn with data, no external request."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select, update

from decider.cases.service import CASE
from decider.config import load_settings
from decider.db import make_engine, now
from helpers import PASSWORD, review_headers, seed_credentials, server, write_config

pytestmark = pytest.mark.browser
DAYS = 5
# The README's picture is refreshed only on request, so a test run leaves the work tree clean.
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "monitoring.png"
UPDATE_SCREENSHOTS = os.environ.get("DECIDER_UPDATE_SCREENSHOTS") == "1"

# For each chart: its Chart.js instance, how many data points it holds, and whether pixels were drawn.
CHARTS_JS = """() => [...document.querySelectorAll('canvas[data-chart]')].map(c => {
  const chart = Chart.getChart(c);
  const points = chart ? chart.data.datasets.flatMap(d => d.data).filter(v => v !== null && v > 0).length : 0;
  const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let inked = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) inked++; }
  return {id: c.id, chart: !!chart, points, inked, width: c.width};
})"""


# The time axis as drawn: per bucket its tick text (a list when on two lines) and the cases charted in it.
TICKS_JS = """() => { const c = Chart.getChart('chart-timeline');
  const cases = i => c.data.datasets[0].data[i] + c.data.datasets[1].data[i];
  return c.scales.x.ticks.map(t => ({tick: t.label, cases: cases(t.value)}));
}"""


def log_in(page, base: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + "/login?next=/monitoring")
    page.fill("#name", "root")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/monitoring")
    page.wait_for_selector("html[data-charts-ready=yes]")


def feed(base: str, headers: dict[str, str], db_url: str, reviewer: dict[str, str]) -> None:
    """Five days of cases: like training at first, shifted over the last two; some reviewed, some with
    outcomes. Cases are sent now, then their timestamps spread back over the days in the database."""
    rng = np.random.default_rng(3)
    labels = ["setosa", "versicolor", "virginica"]
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(DAYS * 24):
            shift = 0.7 if i >= (DAYS - 2) * 24 else 0.0
            species = rng.integers(3)
            features = {"sepal length (cm)": round(float(rng.normal((5.0, 5.9, 6.6)[species], 0.4)) + shift, 1),
                        "petal width (cm)": round(abs(float(rng.normal((0.25, 1.3, 2.0)[species], 0.2))) + shift, 1)}
            case = client.post("/api/v1/cases", json={"features": features}).json()
            truth = labels[species] if rng.random() < 0.9 else labels[(species + 1) % 3]
            if case["status"] == "pending" and rng.random() < 0.7:
                client.post(f"/api/v1/review/cases/{case['id']}/claim", headers=reviewer).raise_for_status()
                label = case["prediction"] if rng.random() < 0.75 else truth
                client.post(f"/api/v1/review/cases/{case['id']}/resolve", json={"label": label}, headers=reviewer)
            if rng.random() < 0.5:
                client.post(f"/api/v1/cases/{case['id']}/outcome", json={"label": truth}).raise_for_status()
    engine = make_engine(db_url)
    with engine.begin() as conn:
        ids = conn.execute(select(CASE.c.id).order_by(CASE.c.id)).scalars().all()
        start = now() - timedelta(days=DAYS)
        for n, case_id in enumerate(ids):
            at = start + timedelta(hours=n * 24 * DAYS / len(ids))
            conn.execute(update(CASE).where(CASE.c.id == case_id).values(created_at=at))
            conn.execute(update(CASE).where(CASE.c.id == case_id, CASE.c.reviewed_at.is_not(None))
                         .values(reviewed_at=at + timedelta(hours=2)))
    engine.dispose()


def test_monitoring_page_draws_every_chart(tmp_path, browser):
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    config = write_config(tmp_path, db_url)
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        feed(base, {"Authorization": f"Bearer {key}"}, db_url, review_headers(load_settings(config)))
    with server(config) as base:  # restarted: the cache read at start predates the timestamps spread back
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        log_in(page, base)
        charts = page.evaluate(CHARTS_JS)
        assert len(charts) == 7, charts
        for chart in charts:
            assert chart["chart"] and chart["points"] > 0 and chart["inked"] > 1000, chart
        assert page.locator("#drift-table tr[data-flag=yes]").count() >= 1  # the shifted tail is flagged
        # The top confidence bin (where most cases are) is labelled; quality spans 0-100%.
        axes = page.evaluate("""() => ({
          conf: Chart.getChart('chart-confidence').scales.x.ticks.map(t => t.label).filter(Boolean),
          quality: [Chart.getChart('chart-quality').scales.y.min, Chart.getChart('chart-quality').scales.y.max]})""")
        assert axes["conf"][-1] == "0.95–1.00" and axes["quality"] == [0, 1], axes
        # Five days of cases: 3-hour buckets from the first case on, ticked every 12 hours, the date beneath
        # the first tick and each midnight.
        ticks = page.evaluate(TICKS_JS)
        assert 40 <= len(ticks) <= 60 and ticks[0]["cases"] > 0, ticks[:3]
        shown = [t["tick"] for t in ticks if t["tick"]]
        assert 8 <= len(shown) <= 12, shown
        for n, t in enumerate(shown):
            time = t[0] if isinstance(t, list) else t
            assert time in ("00:00", "12:00") and isinstance(t, list) == (n == 0 or time == "00:00"), shown
            assert not isinstance(t, list) or re.fullmatch(r"\d\d-\d\d", t[1]), shown
        assert page.locator("#flags [role=alert]").is_visible()
        assert all(url.startswith(base) for url in requests), requests
        if UPDATE_SCREENSHOTS:
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        page.close()


def test_a_young_service_is_charted_in_hours_from_its_first_case(tmp_path, browser):
    """Five hours old, in the default seven-day window: six hourly buckets, each one labelled, no empty days."""
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    config = write_config(tmp_path, db_url)
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            ids = [client.post("/api/v1/cases", json={"features": {"sepal length (cm)": 5.0 + i / 10,
                                                                   "petal width (cm)": 0.2}}).json()["id"]
                   for i in range(12)]
        engine = make_engine(db_url)
        first = now().replace(minute=30, second=0, microsecond=0) - timedelta(hours=5)
        with engine.begin() as conn:
            for n, case_id in enumerate(ids):
                at = first + timedelta(minutes=25 * n)
                conn.execute(update(CASE).where(CASE.c.id == case_id).values(created_at=at))
        engine.dispose()
    with server(config) as base:  # restarted: the cache read at start predates the timestamps moved back
        # Six hourly buckets, from the first case's hour to this one: seven if the clock turns an hour while
        # the server restarts (about 10 s in 3,600), so the count is taken either side of the page.
        def hours() -> int:
            return int((now() - first.replace(minute=0)) // timedelta(hours=1)) + 1

        before = hours()
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        log_in(page, base)
        ticks = page.evaluate(TICKS_JS)
        assert before <= len(ticks) <= hours() and ticks[0]["cases"] > 0, (before, ticks)
        assert ticks[0]["tick"] == [f"{first:%H}:00", f"{first:%m-%d}"]
        assert all(t["tick"] for t in ticks)  # every bucket labelled
        assert "hour" in page.locator("#window").inner_text()
        page.close()
