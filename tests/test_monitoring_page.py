"""The /monitoring page (admins only) and `decider report`, the same figures as one self-contained file."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from helpers import AMBIGUOUS, PASSWORD, SETOSA, api, review_headers, settings_for, submit, two_case_report


def log_in(client, name: str) -> None:  # type: ignore[no-untyped-def]
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]
    got = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": token}, follow_redirects=False)
    assert got.status_code == 303


def embedded_figures(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="monitoring-figures">(.*?)</script>',
                                html, re.S)[1])


def test_page_is_for_admins(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        anonymous = client.get("/monitoring", follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
        log_in(client, "alice")
        assert client.get("/monitoring").status_code == 403


def test_page_shows_charts_tables_and_the_same_figures_as_the_api(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        for features in [SETOSA] * 3 + [AMBIGUOUS] * 2:
            submit(client, h, features)
        log_in(client, "root")
        page = client.get("/monitoring", params={"since": "", "until": "", "last": "", "bucket": ""})
        assert page.status_code == 200
        html = page.text
        for canvas in ("chart-timeline", "chart-queue", "chart-confidence", "chart-classes", "chart-quality",
                       "chart-drift-0", "chart-drift-1"):
            assert f'id="{canvas}"' in html
        for table in ("drift-table", "classes-table", "quality-table", "timeline-table"):
            assert f'id="{table}"' in html
        assert '<script src="/static/vendor/chart.umd.min.js">' in html
        shown = embedded_figures(html)
        api_fig = client.get("/api/v1/monitoring", headers=review_headers(client, "root")).json()
        assert shown["window"]["cases"] == api_fig["window"]["cases"] == 5
        assert shown["quality"] == api_fig["quality"] and shown["outputs"] == api_fig["outputs"]
        as_json = client.get("/monitoring", params={"format": "json"})  # the page's JSON button, for the admin
        assert as_json.headers["content-type"] == "application/json" and as_json.json()["quality"] == api_fig["quality"]
        narrowed = embedded_figures(client.get("/monitoring", params={"last": "2", "bucket": "hour"}).text)
        assert narrowed["window"]["cases"] == 2 and narrowed["window"]["bucket"] == "hour"
        bad = client.get("/monitoring", params={"last": "many"})
        assert bad.status_code == 422 and "query.last" in bad.text  # a page for people, naming the field
        assert bad.headers["content-type"].startswith("text/html")


def test_flags_are_shown_past_thresholds(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        for _ in range(30):  # far outside training: every drift figure past its threshold
            submit(client, h, {"sepal length (cm)": 9.5, "petal width (cm)": 3.1})
        log_in(client, "root")
        html = client.get("/monitoring").text
    assert 'role="alert"' in html
    for figure in ("drift.sepal length (cm).ks", "drift.petal width (cm).ks",
                   "drift.petal width (cm).out_of_range"):
        assert f'data-figure="{figure}"' in html
    assert 'data-figure="drift.sepal length (cm).psi"' not in html  # PSI waits for 200 values
    assert html.count('data-flag="yes"') == 2
    # Below 200 values PSI is not judged, and 30 predictions are too few for the class PSI: never "ok".
    assert 'badge ok' not in html and html.count("too few (n &lt; 100)") == 1
    assert "n = 0 reviews" in html


def test_too_few_values_are_never_badged_ok(tmp_path, sqlite_url):
    """Three cases far from training: large PSIs, but every drift figure reads "too few", none "ok"."""
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        for _ in range(3):
            submit(client, h, {"sepal length (cm)": 7.9, "petal width (cm)": 2.5})
        log_in(client, "root")
        html = client.get("/monitoring").text
    fig = embedded_figures(html)
    assert all(f["psi"] > 0.2 and f["status"] == "too_few" for f in fig["drift"]["features"])
    assert fig["outputs"]["classes"]["status"] == "too_few"
    assert 'badge ok' not in html
    assert html.count("too few (n &lt; 30)") == 4  # two chart headers, two table rows
    assert "too few (n &lt; 100)" in html  # the predicted classes' PSI


def test_report_is_one_self_contained_file(tmp_path, sqlite_url):
    done, out = two_case_report(tmp_path, sqlite_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert re.search(r"^2 cases, \d+ figures? past (its|their) threshold$", done.stderr, re.M), done.stderr
    assert "1 figures" not in done.stderr
    html = out.read_text()
    assert embedded_figures(html)["window"]["cases"] == 2
    assert "new Chart(" in html and "Chart.js v4" in html  # the library itself is inlined
    # No external requests: outside the inline style and scripts, no src or href at all; the style loads nothing.
    markup = re.sub(r"<(style|script)\b[^>]*>.*?</\1>", "", html, flags=re.S)
    assert not re.findall(r"\s(?:src|href)\s*=", markup) and "<link" not in markup
    styles = "".join(re.findall(r"<style>(.*?)</style>", html, re.S))
    assert "url(" not in styles and "@import" not in styles
    assert 'id="chart-drift-0"' in html and 'id="quality-table"' in html


def test_report_refuses_a_bad_date(tmp_path, sqlite_url):
    settings = settings_for(tmp_path, sqlite_url)
    done = subprocess.run([sys.executable, "-m", "decider", "report", "--config", str(settings.config_path),
                           "--since", "last tuesday"], capture_output=True, text=True)
    assert done.returncode == 2 and "since" in done.stderr
