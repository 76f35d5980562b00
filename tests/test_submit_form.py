"""The submission form at /submit and the `submitter` role, over HTTP on every engine: the form is the API's
path (same checks and messages, same routing), identity comes from the session, and a submitter reaches
nothing but the form and their own cases."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import make_classification
from sqlalchemy import func, select, update
from sqlmodel import Session

from decider.auth.service import add_user, create_review_token, person_for_token
from decider.auth.tables import User
from decider.cases.service import CASE
from decider.contract import Contract, FieldSpec
from decider.errors import Conflict, Forbidden
from decider.web.pages import templates
from decider.web.submit_form import features_of, form_fields, problems_of, web_client
from helpers import AMBIGUOUS, PASSWORD, SETOSA, api, review_headers, settings_for, submit
from review_helpers import csrf_of, login
from test_thresholds import write_csv

SUBMITTER = "sam"


def add_submitter(client: TestClient, name: str = SUBMITTER) -> None:
    with Session(client.app.state.runtime.engine) as session:  # type: ignore[attr-defined]
        add_user(session=session, name=name, password=PASSWORD, role="submitter")
        session.commit()


def as_person(client: TestClient, name: str) -> str:
    """Log `client` in as `name` and return the form's CSRF token."""
    assert login(client, name).status_code == 303
    return csrf_of(client.get("/login").text)


def form(features: dict[str, object], **extra: str) -> dict[str, str]:
    return {f"features.{k}": str(v) for k, v in features.items()} | extra


def case_count(client: TestClient) -> int:
    with client.app.state.runtime.engine.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(select(func.count()).select_from(CASE)).scalar_one()


def messages(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="field-error" id="f\d+-error">(.*?)</p>', page)]


# ---- roles ----

REVIEWER_ONLY = ["/review", "/review/cases/1"]
ADMIN_ONLY = ["/admin/users", "/admin/policy", "/admin/models", "/admin/webhooks", "/monitoring"]


def test_a_submitter_reaches_the_form_and_nothing_a_reviewer_or_admin_can(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        submit(client, h, AMBIGUOUS)
        add_submitter(client)
        response = login(client, SUBMITTER)
        assert response.headers["location"] == "/submit"  # lands on the form, not the queue it cannot open
        token = csrf_of(client.get("/submit").text)
        assert client.get("/", follow_redirects=False).headers["location"] == "/submit"
        for path in REVIEWER_ONLY + ADMIN_ONLY:
            assert client.get(path).status_code == 403, path
        for path in ("/review/next", "/review/cases/1/decide", "/review/cases/1/skip", "/admin/users/add"):
            assert client.post(path, data={"csrf": token, "label": "setosa", "name": "x", "role": "admin",
                                           "password": PASSWORD, "password_again": PASSWORD}).status_code == 403, path
        page = client.get("/submit").text
        assert 'href="/review"' not in page and 'href="/admin/' not in page  # no link to what it cannot open
        with client.app.state.runtime.engine.connect() as conn:
            case = conn.execute(select(CASE.c.review_status, CASE.c.claimed_by)).one()
        assert tuple(case) == ("pending", None)  # the refused decide and next claimed nothing


def test_a_reviewer_cannot_submit_and_an_admin_can(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, _):
        token = as_person(client, "alice")
        assert client.get("/submit").status_code == 403
        assert client.post("/submit", data=form(SETOSA, csrf=token)).status_code == 403
        assert case_count(client) == 0
        assert 'href="/submit"' not in client.get("/review").text
        client.cookies.clear()
        token = as_person(client, "root")
        assert 'href="/submit"' in client.get("/review").text
        response = client.post("/submit", data=form(SETOSA, csrf=token), follow_redirects=False)
        assert response.status_code == 303 and case_count(client) == 1


def test_a_submitter_has_no_review_token(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, _):
        add_submitter(client)
        engine = client.app.state.runtime.engine
        with Session(engine) as session, pytest.raises(Conflict, match="review tokens are for reviewers"):
            create_review_token(session=session, user_name=SUBMITTER)
        # A token made while the person was a reviewer stops working when the role says submitter.
        headers = review_headers(client, "bob")
        with Session(engine) as session:
            session.exec(update(User).where(User.name == "bob").values(role="submitter"))  # type: ignore[call-overload]
            session.commit()
        assert client.post("/api/v1/review/claim", headers=headers).status_code == 403
        with engine.connect() as conn, pytest.raises(Forbidden):
            person_for_token(conn=conn, key=headers["Authorization"].split()[1])


def test_users_add_with_the_submitter_role(tmp_path, sqlite_url):
    settings = settings_for(tmp_path, sqlite_url)
    with api(settings) as (client, _):
        run = subprocess.run([sys.executable, "-m", "decider", "users", "add", "pat", "--role", "submitter",
                              "--config", str(settings.config_path)], input=f"{PASSWORD}\n{PASSWORD}\n",
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert login(client, "pat").headers["location"] == "/submit"
        client.cookies.clear()
        token = as_person(client, "root")
        page = client.get("/admin/users").text
        assert '<option value="submitter">submitter</option>' in page
        added = client.post("/admin/users/add", data={"csrf": token, "name": "quinn", "role": "submitter",
                                                       "password": PASSWORD, "password_again": PASSWORD})
        assert added.status_code == 200 and "Added submitter quinn." in added.text


# ---- submitting ----

def test_a_clear_case_is_decided_and_an_unclear_one_waits_then_shows_the_decision(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        add_submitter(client)
        token = as_person(client, SUBMITTER)
        clear = client.post("/submit", data=form(SETOSA, csrf=token), follow_redirects=False)
        assert clear.status_code == 303
        page = client.get(clear.headers["location"]).text
        assert 'id="decision">setosa<' in page and "Decided by the model" in page and "hx-get" not in page
        unclear = client.post("/submit", data=form(AMBIGUOUS, csrf=token), follow_redirects=False)
        case_id = int(unclear.headers["location"].rsplit("/", 1)[1])
        page = client.get(f"/submit/cases/{case_id}").text
        assert "Waiting for review" in page and f'hx-get="/submit/cases/{case_id}/status"' in page
        assert "versicolor" in page  # partial: the model's suggestion may be shown
        alice = review_headers(client, "alice")
        assert client.post(f"/api/v1/review/cases/{case_id}/claim", headers=alice).status_code == 200
        assert client.post(f"/api/v1/review/cases/{case_id}/resolve", headers=alice,
                           json={"label": "virginica"}).status_code == 200
        fragment = client.get(f"/submit/cases/{case_id}/status")
        assert fragment.headers["cache-control"] == "no-cache"
        assert 'id="decision">virginica<' in fragment.text and "by alice" in fragment.text
        assert "hx-get" not in fragment.text  # decided: the page stops asking
        listed = client.get("/submit").text
        assert f'href="/submit/cases/{case_id}"' in listed and "virginica" in listed


def test_a_form_case_is_routed_and_stored_as_an_api_case(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        add_submitter(client)
        token = as_person(client, SUBMITTER)
        by_api = [submit(client, h, f) for f in (SETOSA, AMBIGUOUS)]
        for features, other in zip((SETOSA, AMBIGUOUS), by_api, strict=True):
            # The client is the session's person, whatever the form says.
            response = client.post("/submit", data=form(features, csrf=token, client="tests"),
                                   follow_redirects=False)
            case_id = int(response.headers["location"].rsplit("/", 1)[1])
            with client.app.state.runtime.engine.connect() as conn:
                row = conn.execute(select(CASE).where(CASE.c.id == case_id)).mappings().one()
            assert row["client"] == "web:sam" and row["features"] == features
            for column in ("route", "status", "decision", "prediction", "confidence", "model_version",
                           "policy_version", "contract_version"):
                assert row[column] == other[column], column
            assert row["effective_level"] == other["level"]
        # Another client cannot read it over the API, and another submitter gets a 404 on its page.
        assert client.get(f"/api/v1/cases/{case_id}", headers=h).status_code == 404
        add_submitter(client, "sue")
        client.cookies.clear()
        as_person(client, "sue")
        assert client.get(f"/submit/cases/{case_id}").status_code == 404
        assert client.get(f"/submit/cases/{case_id}/status").status_code == 404
        assert f"/submit/cases/{case_id}" not in client.get("/submit").text
        client.cookies.clear()
        as_person(client, "root")
        assert client.get(f"/submit/cases/{case_id}").status_code == 200  # an admin sees any


def test_bad_values_get_the_api_s_message_next_to_the_field(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        add_submitter(client)
        token = as_person(client, SUBMITTER)
        name = "petal width (cm)"
        cases = [({**SETOSA, name: "abc"}, {"features": {**SETOSA, name: "abc"}}),
                 ({"sepal length (cm)": 5.0, name: ""}, {"features": {"sepal length (cm)": 5.0}}),
                 ({**SETOSA, "petal colour": 3}, {"features": {**SETOSA, "petal colour": 3}})]
        for sent, api_body in cases:
            response = client.post("/submit", data=form(sent, csrf=token))
            assert response.status_code == 422
            api_answer = client.post("/api/v1/cases", json=api_body, headers=h).json()
            assert api_answer["detail"] in html.unescape(response.text), api_answer
            if api_answer["field"] == f"features.{name}":
                assert messages(response.text) == [api_answer["detail"]]  # beside the field it names
                assert 'aria-invalid="true"' in response.text
        assert case_count(client) == 0
        # Every wrong field at once, each with the API's words; the values typed are kept.
        response = client.post("/submit", data=form({"sepal length (cm)": "1e999", name: "x"}, csrf=token))
        not_a_number = client.post("/api/v1/cases", json={"features": {**SETOSA, name: "x"}}, headers=h).json()
        assert messages(response.text) == ["features.sepal length (cm): Input should be a finite number",
                                           not_a_number["detail"]]
        assert 'value="1e999"' in response.text


def test_the_form_needs_its_csrf_token_and_a_login(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, _):
        response = client.post("/submit", data=form(SETOSA), follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login")
        assert client.get("/submit", follow_redirects=False).headers["location"] == "/login?next=%2Fsubmit"
        add_submitter(client)
        as_person(client, SUBMITTER)
        for forged in ({}, {"csrf": "not-the-token"}):
            assert client.post("/submit", data=form(SETOSA, **forged)).status_code == 403
        assert case_count(client) == 0


def test_a_poll_after_the_session_ended_reloads_the_page(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, _):
        add_submitter(client)
        token = as_person(client, SUBMITTER)
        case_page = client.post("/submit", data=form(AMBIGUOUS, csrf=token)).url.path
        poll = {"HX-Request": "true"}
        assert client.get(case_page + "/status", headers=poll).status_code == 200
        client.post("/logout", data={"csrf": token})
        response = client.get(case_page + "/status", headers=poll, follow_redirects=False)
        assert (response.status_code, response.headers["hx-refresh"], response.text) == (401, "true", "")
        assert client.get(case_page, follow_redirects=False).headers["location"].startswith("/login?next=")


def test_try_scores_without_storing(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, _):
        add_submitter(client)
        token = as_person(client, SUBMITTER)
        response = client.post("/submit", data=form(AMBIGUOUS, csrf=token, action="try"))
        assert response.status_code == 200 and case_count(client) == 0
        assert 'id="try-prediction">versicolor<' in response.text and "wait for a person" in response.text
        response = client.post("/submit", data=form(SETOSA, csrf=token, action="try"))
        assert "decided by the model" in response.text and case_count(client) == 0


@pytest.mark.parametrize("level", ["shadow", "human_only"])
def test_where_the_model_is_hidden_the_submitter_sees_none_of_it(tmp_path, db_url, level):
    with api(settings_for(tmp_path, db_url, level=level)) as (client, h):
        add_submitter(client)
        token = as_person(client, SUBMITTER)
        page = client.get("/submit").text
        assert 'value="try"' not in page
        refused = client.post("/submit", data=form(SETOSA, csrf=token, action="try"))
        assert refused.status_code == 403 and "Try is off" in refused.text
        response = client.post("/submit", data=form(SETOSA, csrf=token), follow_redirects=False)
        case_id = int(response.headers["location"].rsplit("/", 1)[1])
        with client.app.state.runtime.engine.connect() as conn:
            stored = conn.execute(select(CASE.c.prediction, CASE.c.route)).one()
        assert stored.route == "queue" and (stored.prediction == "setosa") == (level == "shadow")
        for path in (f"/submit/cases/{case_id}", f"/submit/cases/{case_id}/status"):
            text = client.get(path).text
            assert "Waiting for review" in text
            for leak in ("setosa", "versicolor", "iris-v1", "confidence", "model-output"):
                assert leak not in text, (path, leak)
        alice = review_headers(client, "alice")
        client.post(f"/api/v1/review/cases/{case_id}/claim", headers=alice).raise_for_status()
        client.post(f"/api/v1/review/cases/{case_id}/resolve", headers=alice,
                    json={"label": "setosa"}).raise_for_status()
        text = client.get(f"/submit/cases/{case_id}").text
        assert 'id="decision">setosa<' in text and "by alice" in text
        assert "iris-v1" not in text and "model-output" not in text


# ---- a model that is not iris ----

def test_a_make_classification_model(tmp_path, db_url):
    from decider.registry.training import csv_dataset, train

    X, y = make_classification(3000, 6, n_informative=4, n_redundant=0, class_sep=2.0, random_state=3)
    write_csv(tmp_path / "data.csv", X, y)
    models = tmp_path / "models"
    models.mkdir()
    train(csv_dataset(tmp_path / "data.csv", "label"), name="synth", version=1, out_dir=models, estimator="logistic")
    settings = settings_for(tmp_path, db_url, models_dir=models, live="synth-v1")
    with api(settings) as (client, h):
        add_submitter(client)
        token = as_person(client, SUBMITTER)
        page = client.get("/submit").text
        assert [f"features.x{i}" for i in range(6)] == re.findall(r'name="(features\.[^"]+)"', page)
        trained = json.loads((models / "synth-v1.json").read_text())["contract"]["fields"]
        for j in range(6):  # the range of the rows the model was fitted on, as the hint under each field
            assert f"Seen in training: {trained[f'x{j}']['min']:.4g} to {trained[f'x{j}']['max']:.4g}." in page
        # The rows farthest from the boundary and nearest to it, as the model itself sees them.
        model = client.app.state.runtime.deployment.live
        proba = model.predict_proba(X[:500])
        confident, unsure = int(np.argmax(proba.max(axis=1))), int(np.argmin(proba.max(axis=1)))
        outcomes = {}
        for i in (confident, unsure):
            features = {f"x{j}": float(X[i, j]) for j in range(6)}
            response = client.post("/submit", data=form(features, csrf=token), follow_redirects=False)
            case_id = int(response.headers["location"].rsplit("/", 1)[1])
            via_api = submit(client, h, features)
            with client.app.state.runtime.engine.connect() as conn:
                row = conn.execute(select(CASE).where(CASE.c.id == case_id)).mappings().one()
            assert (row["route"], row["decision"]) == (via_api["route"], via_api["decision"])
            assert row["features"] == pytest.approx(features)  # repr round-trip: the same floats
            outcomes[i] = row["route"]
        assert outcomes == {confident: "auto", unsure: "queue"}
        missing = client.post("/submit", data=form({"x0": 1.0}, csrf=token))
        assert messages(missing.text) == [f"features.x{j}: missing (the live model needs it as a number)"
                                          for j in range(1, 6)]


def test_category_and_boolean_fields_through_the_form(tmp_path, db_url):
    """`decider train --csv` on text columns: the form draws a select and a yes/no choice from the card, and
    what it stores is the record a client would send (text, true/false), routed as that record is."""
    import pandas as pd
    from typer.testing import CliRunner

    from decider.cli import app as cli

    X, y = make_classification(1200, 3, n_informative=3, n_redundant=0, class_sep=2.0, random_state=8)
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    frame["colour"] = np.where(y == 1, rng.choice(["red", "blue"], 1200, p=[0.9, 0.1]),
                               rng.choice(["red", "blue"], 1200, p=[0.1, 0.9]))
    frame["member"] = rng.random(1200) < 0.5
    frame["label"] = np.where(y == 1, "approve", "decline")
    frame.to_csv(tmp_path / "shop.csv", index=False)
    config = settings_for(tmp_path, db_url, models_dir=tmp_path / "models", live="shop-v1").config_path
    trained = CliRunner().invoke(cli, ["train", "--config", str(config), "--csv", str(tmp_path / "shop.csv"),
                                       "--target", "label"])
    assert trained.exit_code == 0, trained.output
    with api(settings_for(tmp_path, db_url, models_dir=tmp_path / "models", live="shop-v1")) as (client, h):
        add_submitter(client)
        token = as_person(client, SUBMITTER)
        page = client.get("/submit").text
        colour = re.search(r'<select id="f\d" name="features.colour".*?</select>', page, re.S)[0]  # type: ignore[index]
        assert re.findall(r"<option[^>]*>([^<]*)</option>", colour)[1:] == ["blue", "red"]
        assert re.findall(r'type="radio" name="features.member" value="(\w+)"', page) == ["yes", "no"]
        model = client.app.state.runtime.deployment.live
        sure = int(np.argmax(model.predict_proba(model.matrix(
            [{"x0": r.x0, "x1": r.x1, "x2": r.x2, "colour": r.colour, "member": bool(r.member)}
             for r in frame.itertuples()])).max(axis=1)))
        row = frame.iloc[sure]
        record = {"x0": float(row.x0), "x1": float(row.x1), "x2": float(row.x2), "colour": row.colour,
                  "member": bool(row.member)}
        for colour_sent, route in ((row.colour, "auto"), ("purple", "queue")):  # purple: never seen, novel
            sent = form({k: v for k, v in record.items() if k != "member"}, csrf=token,
                        **{"features.colour": colour_sent, "features.member": "yes" if row.member else "no"})
            response = client.post("/submit", data=sent, follow_redirects=False)
            case_id = int(response.headers["location"].rsplit("/", 1)[1])
            via_api = submit(client, h, {**record, "colour": colour_sent})
            with client.app.state.runtime.engine.connect() as conn:
                stored = conn.execute(select(CASE).where(CASE.c.id == case_id)).mappings().one()
            assert stored["features"]["colour"] == colour_sent and stored["features"]["member"] is bool(row.member)
            assert (stored["route"], stored["decision"]) == (via_api["route"], via_api["decision"])
            assert stored["route"] == route
        refused = client.post("/submit", data={**sent, "features.member": "maybe"})
        api_answer = client.post("/api/v1/cases", json={"features": {**record, "member": "maybe"}}, headers=h).json()
        assert refused.status_code == 422 and messages(refused.text) == [api_answer["detail"]]


# ---- the form itself, from a contract (pure) ----

MIXED = Contract({"age": FieldSpec("age", "number", 18, 90), "colour": FieldSpec("colour", "category",
                  categories=("red", "blue")), "member": FieldSpec("member", "boolean"),
                  "income": FieldSpec("income", "number", 0, 1e6, nullable=True)})


def test_each_kind_of_field_gets_its_input():
    html = templates.get_template("submit.html").render(
        fields=form_fields(MIXED, ["age", "colour", "member", "income"]), errors={}, elsewhere={}, recent=[],
        may_try=True, contract_version=MIXED.version, csrf="t", user=None, flash=None, request=None)
    assert re.search(r'<input id="f0" name="features.age" type="number" step="any"[^>]*required', html)
    assert "Seen in training: 18 to 90." in html
    select_html = re.search(r'<select id="f1" name="features.colour".*?</select>', html, re.S)[0]  # type: ignore[index]
    assert re.findall(r"<option[^>]*>([^<]*)</option>", select_html) == ["choose…", "red", "blue"]
    assert re.findall(r'type="radio" name="features.member" value="(\w+)"', html) == ["yes", "no"]
    income = re.search(r'<input id="f3"[^>]*>', html, re.S)[0]  # type: ignore[index]
    assert "required" not in income and "May be left empty" in html


def test_form_values_become_the_api_s_types():
    features, raw = features_of(MIXED, [("features.age", " 41 "), ("features.colour", "red"),
                                        ("features.member", "no"), ("features.income", ""), ("csrf", "x"),
                                        ("client", "evil")])
    assert features == {"age": 41.0, "colour": "red", "member": False, "income": None}
    assert set(raw) == {"features.age", "features.colour", "features.member", "features.income"}
    features, _ = features_of(MIXED, [("features.age", "")])
    assert features == {}  # an empty required field is a field left out: the contract calls it missing
    assert problems_of(MIXED, ["age"], features) == {
        "features.age": "features.age: missing (the live model needs it as a number)"}


def test_long_names_still_fit_the_client_column():
    assert web_client("sam") == "web:sam"
    long_a, long_b = "a" * 99 + "x", "a" * 99 + "y"
    assert len(web_client(long_a)) == 100 and web_client(long_a) != web_client(long_b)



def test_the_same_form_sent_twice_stores_one_case(tmp_path, db_url):
    """A double press of Submit (the same form, the same key) returns the first case; the form drawn again
    after an error keeps its key; the same form resent with other values is another case."""
    with api(settings_for(tmp_path, db_url)) as (client, h):
        add_submitter(client)
        token = as_person(client, SUBMITTER)
        key = re.search(r'name="submission" value="([^"]+)"', client.get("/submit").text).group(1)  # type: ignore[union-attr]
        before = case_count(client)
        first = client.post("/submit", data=form(SETOSA, csrf=token, submission=key), follow_redirects=False)
        again = client.post("/submit", data=form(SETOSA, csrf=token, submission=key), follow_redirects=False)
        assert first.status_code == again.status_code == 303
        assert first.headers["location"] == again.headers["location"] and case_count(client) == before + 1
        other = client.post("/submit", data=form(AMBIGUOUS, csrf=token, submission=key), follow_redirects=False)
        assert other.headers["location"] != first.headers["location"] and case_count(client) == before + 2
        refused = client.post("/submit", data=form({**SETOSA, "sepal length (cm)": "x"}, csrf=token,
                                                  submission="form-" + "k" * 20))
        assert refused.status_code == 422 and 'value="form-kkkkkkkkkkkkkkkkkkkk"' in refused.text
        forged = client.post("/submit", data=form(SETOSA, csrf=token, submission="not a key"), follow_redirects=False)
        assert forged.status_code == 303 and case_count(client) == before + 3  # not a form key: a case of its own
