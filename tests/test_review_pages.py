"""The reviewer's pages over HTTP: queue, case page, decide, skip, and what the model may show."""

from __future__ import annotations

import re

from helpers import AMBIGUOUS, SETOSA, api, review_headers, settings_for, submit
from review_helpers import csrf_of, logged_in

OUTSIDE = {"sepal length (cm)": 9.9, "petal width (cm)": 1.6}  # longer sepals than any training flower


def case_ids_on(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/review/cases/(\d+)"', html)]


def test_queue_page_counts_pending_and_pages_through(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, level="assist")) as (client, h):
        ids = [submit(client, h, AMBIGUOUS)["id"] for _ in range(55)]
        logged_in(client, "alice")
        first = client.get("/review")
        assert '<div class="big" id="pending-count">55</div>' in first.text
        assert re.search(r'id="oldest-age">\s*\d+ s', first.text)
        assert case_ids_on(first.text) == ids[:50]
        link = re.search(r'href="(/review\?[^"]+)" rel="next"', first.text)[1].replace("&amp;", "&")
        assert case_ids_on(client.get(link).text) == ids[50:]
        filtered = client.get("/review", params={"sort": "confidence", "suggested": "setosa"})
        assert case_ids_on(filtered.text) == [] and "that matches these filters" in filtered.text


def test_case_page_shows_features_against_training_and_the_suggestion(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        case_id = submit(client, h, OUTSIDE)["id"]
        logged_in(client, "alice")
        page = client.get(f"/review/cases/{case_id}").text
        assert "outside training range" in page and 'id="suggestion"' in page
        assert page.index('id="features"') < page.index('id="decide-form"') < page.index('id="history"')
        for i, label in enumerate(["setosa", "versicolor", "virginica"], 1):
            assert f'value="{label}" data-key="{i}"' in page


def test_shadow_level_case_page_shows_no_suggestion(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, level="shadow")) as (client, h):
        case_id = submit(client, h, AMBIGUOUS)["id"]
        logged_in(client, "alice")
        page = client.get(f"/review/cases/{case_id}").text
        assert 'id="suggestion"' not in page and 'id="no-suggestion"' in page
        assert "versicolor</strong>" not in page and "confidence" not in page.split('id="history"')[1]
        queue = client.get("/review?sort=confidence").text
        assert ">hidden<" in queue


def test_decide_goes_straight_on_to_the_next_case(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, level="assist")) as (client, h):
        first, second = (submit(client, h, AMBIGUOUS)["id"] for _ in range(2))
        token = logged_in(client, "alice")
        assert client.post("/review/next", data={"csrf": token}, follow_redirects=False).headers["location"] == \
            f"/review/cases/{first}"
        done = client.post(f"/review/cases/{first}/decide", data={"csrf": token, "label": "virginica",
                                                                  "note": " long petals "}, follow_redirects=False)
        assert done.headers["location"] == f"/review/cases/{second}"
        page = client.get(done.headers["location"]).text
        assert f"Case #{first} decided: virginica." in page
        got = client.get(f"/api/v1/cases/{first}", headers=h).json()
        assert (got["decision"], got["decided_by"]) == ("virginica", "alice")
        history = client.get(f"/api/v1/review/cases/{first}", headers=review_headers(client)).json()["history"]
        assert history[-1]["detail"] == {"label": "virginica", "note": "long petals"}
        last = client.post(f"/review/cases/{second}/decide", data={"csrf": token, "label": "setosa"},
                           follow_redirects=False)
        assert last.headers["location"] == "/review"
        assert "nothing else is waiting" in client.get("/review").text


def test_skip_releases_and_opens_another_case(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, level="assist")) as (client, h):
        first, second = (submit(client, h, AMBIGUOUS)["id"] for _ in range(2))
        token = logged_in(client, "alice")
        client.get(f"/review/cases/{first}")
        skipped = client.post(f"/review/cases/{first}/skip", data={"csrf": token}, follow_redirects=False)
        assert skipped.headers["location"] == f"/review/cases/{second}"
        case = client.get(f"/api/v1/review/cases/{first}", headers=review_headers(client)).json()
        assert case["claimed_by"] is None and [e["kind"] for e in case["history"]][-1] == "released"


def test_a_case_held_by_someone_else_cannot_be_decided_from_the_page(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        case_id = submit(client, h, AMBIGUOUS)["id"]
        client.post("/api/v1/review/claim", headers=review_headers(client, "bob"))
        token = logged_in(client, "alice")
        page = client.get(f"/review/cases/{case_id}").text
        assert "claimed by bob" in page and 'id="decide-form"' not in page
        refused = client.post(f"/review/cases/{case_id}/decide", data={"csrf": token, "label": "setosa"})
        assert "claimed by bob" in refused.text
        assert client.get(f"/api/v1/cases/{case_id}", headers=h).json()["status"] == "pending"


def test_a_decided_case_shows_its_outcome_and_history(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        case_id = submit(client, h, SETOSA)["id"]
        logged_in(client, "alice")
        page = client.get(f"/review/cases/{case_id}").text
        assert 'id="decide-form"' not in page and "Decision <strong>setosa</strong> by model" in page
        assert client.get("/review/cases/424242").status_code == 404
        assert csrf_of(page)
