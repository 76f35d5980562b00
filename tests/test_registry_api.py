"""GET /api/v1/models and /admin/models: versions, roles, history, and figures per version and role."""

from __future__ import annotations

import re
import time

from sqlalchemy import select, update

from decider.cases.tables import Case, ShadowPrediction
from decider.config import load_settings
from helpers import AMBIGUOUS, SETOSA, api, model_versions, review_headers, submit, write_config
from review_helpers import login

DEPLOYED = 'candidate = "iris-v2"\ncanary_percent = 40\nshadow = ["iris-v4"]'
FLOWERS = [SETOSA, AMBIGUOUS, {"sepal length (cm)": 6.5, "petal width (cm)": 2.0},
           {"sepal length (cm)": 5.9, "petal width (cm)": 1.3}]


def wait_for_shadows(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if len(conn.execute(select(ShadowPrediction.id)).all()) >= n:
                return
        time.sleep(0.05)
    raise AssertionError("shadow rows did not arrive")


def expected(engine) -> dict:  # type: ignore[no-untyped-def]
    """The figures recomputed by hand from the stored rows."""
    with engine.connect() as conn:
        cases = {c.id: c for c in conn.execute(select(Case)).all()}
        shadows = conn.execute(select(ShadowPrediction)).all()
    out: dict = {}
    for c in cases.values():
        f = out.setdefault((c.model_version, c.model_role), {"cases": 0, "auto": 0, "labelled": 0, "right": 0})
        f["cases"] += 1
        f["auto"] += c.route == "auto"
        if c.review_label is not None:
            f["labelled"] += 1
            f["right"] += c.review_label == c.prediction
    s = out.setdefault(("iris-v4", "shadow"), {"cases": 0, "compared": 0, "agreed": 0, "outcomes": 0, "hits": 0})
    for row in shadows:
        c = cases[row.case_id]
        s["cases"] += 1
        if c.model_role == "live":
            s["compared"] += 1
            s["agreed"] += row.prediction == c.prediction
        if c.outcome is not None:
            s["outcomes"] += 1
            s["hits"] += row.prediction == c.outcome
    return out


def test_models_api_reports_roles_and_figures_per_version(tmp_path, db_url):
    settings = load_settings(write_config(tmp_path, db_url, models_dir=model_versions(tmp_path), models=DEPLOYED))
    with api(settings) as (client, h):
        assert client.get("/api/v1/models").status_code == 401
        cases = [submit(client, h, FLOWERS[i % 4], key=f"k{i}") for i in range(80)]
        engine = client.app.state.runtime.engine
        wait_for_shadows(engine, 80)
        with engine.begin() as conn:  # people label some cases and report some outcomes
            conn.execute(update(Case).where(Case.id % 3 == 0).values(review_label="versicolor"))
            conn.execute(update(Case).where(Case.id % 4 == 0).values(outcome="setosa"))
        body = client.get("/api/v1/models", headers=review_headers(client, "root")).json()
        want = expected(engine)

    assert body["deployment"] == {"live": "iris-v1", "candidate": "iris-v2", "canary_percent": 40.0,
                                  "shadows": ["iris-v4"], "problem": None}
    roles = {v["id"]: v["roles"] for v in body["versions"]}
    assert roles == {"iris-v1": ["live"], "iris-v2": ["candidate (40%)"], "iris-v3": [], "iris-v4": ["shadow"]}
    assert all(v["test_accuracy"] > 0.8 for v in body["versions"])
    status = {v["id"]: v["status"] for v in body["versions"]}
    assert status.pop("iris-v3").startswith("refused: model 'iris-v3' needs ['petal length (mm)']")  # as promote says
    assert set(status.values()) == {"ok"}
    # The config's roles as first seen, each recorded: shadows, candidate (with its share), live.
    assert [(s["role"], s["model_id"], s["actor"]) for s in body["history"]] == [
        ("shadow", "iris-v4", "config"), ("candidate", "iris-v2", "config"), ("live", "iris-v1", "config")]
    figures = {(f["model_version"], f["role"]): f for f in body["figures"]}
    assert set(figures) == {("iris-v1", "live"), ("iris-v2", "candidate"), ("iris-v4", "shadow")}
    assert sum(f["cases"] for k, f in figures.items() if k[1] != "shadow") == len(cases)
    for key in (("iris-v1", "live"), ("iris-v2", "candidate")):
        f, w = figures[key], want[key]
        assert (f["cases"], f["auto_decided"], f["labelled"]) == (w["cases"], w["auto"], w["labelled"])
        assert f["label_accuracy"] == round(w["right"] / w["labelled"], 4)
        assert f["agreement_with_live"] is None
    f, w = figures[("iris-v4", "shadow")], want[("iris-v4", "shadow")]
    assert (f["cases"], f["compared_with_live"], f["outcomes"]) == (80, w["compared"], w["outcomes"])
    assert f["agreement_with_live"] == round(w["agreed"] / w["compared"], 4)
    assert f["outcome_accuracy"] == round(w["hits"] / w["outcomes"], 4)
    assert f["errors"] == 0 and f["mean_latency_ms"] > 0


def test_admin_models_page(tmp_path, sqlite_url):
    settings = load_settings(write_config(tmp_path, sqlite_url, models_dir=model_versions(tmp_path),
                                         models=DEPLOYED))
    with api(settings) as (client, h):
        for i in range(8):
            submit(client, h, FLOWERS[i % 4])
        wait_for_shadows(client.app.state.runtime.engine, 8)
        assert client.get("/admin/models", follow_redirects=False).status_code == 303  # log in first
        login(client, "alice")
        assert client.get("/admin/models").status_code == 403  # reviewers do not switch models
        login(client, "root")
        page = client.get("/admin/models")
    assert page.status_code == 200
    html = page.text
    assert 'id="live-model">iris-v1<' in html and "iris-v2 · 40%" in html
    for text in ("candidate (40%)", "Agreement with live", "sklearn.<wbr>datasets.<wbr>load_iris",
                 "petal length (mm)"):
        assert text in html
    # Card times as on the rest of the pages (UTC to the minute), not raw ISO 8601.
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d\u00a0UTC</td>", html) and "+00:00" not in html
