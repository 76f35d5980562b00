"""Drift of category inputs (monitoring/categories.py): the live share of each category against its training
count on the card, a chi-square test of the counts and the share unseen in training. The test's false-alarm
rate, by repetition, on samples drawn from the training frequencies; its power after a shift; and the same
figures from the monitoring cache's first read (columns, on SQLite and PostgreSQL) as from the case rows,
shown in the report's page. Cards written by hand: a category field's card statistics carry `counts`."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import insert, select

from decider.cases.service import CASE
from decider.db import make_engine, now, upgrade
from decider.monitoring.categories import UNSEEN, CategoryBins, category_drift, chi_square
from decider.monitoring.drift import THRESHOLDS, Thresholds, psi
from decider.monitoring.figures import compute
from decider.monitoring.report import render_report
from decider.monitoring.service import monitoring_figures

COLOURS = {"red": 500, "green": 300, "blue": 150, "grey": 40, "teal": 10}
# Thirty categories, Zipf-like: a few common, many rare (expected counts under 5 at n = 200: pooled).
MANY = {f"c{i:02d}": int(2000 / (i + 1)) for i in range(30)}


def drawn(counts: dict[str, int], n: int, rng: np.random.Generator) -> list[str]:
    names = list(counts)
    p = np.array(list(counts.values()), dtype=float)
    return list(rng.choice(names, size=n, p=p / p.sum()))


def drift(values: list[str], counts: dict[str, int], thresholds: Thresholds = THRESHOLDS) -> dict:
    bins = CategoryBins({"counts": counts})
    return category_drift("colour", bins, bins.tally(values), thresholds)


@pytest.mark.parametrize("counts", [COLOURS, MANY], ids=["5 categories", "30 categories"])
def test_samples_from_the_training_frequencies_flag_at_the_stated_rate(counts):
    """1,000 windows of 200 values drawn from training: flagged about 1% of the time (category_pvalue); a
    binomial count of 10 expected, so above 22 (p < 0.001) would say the rate is not held."""
    rng = np.random.default_rng(15)
    flagged = sum(drift(drawn(counts, 200, rng), counts)["flag"] for _ in range(1000))
    assert flagged <= 22


def test_psi_over_many_categories_would_flag_by_chance():
    """Why the flag is the chi-square test: PSI's noise grows with the number of categories."""
    rng = np.random.default_rng(2)
    psis = [drift(drawn(MANY, 200, rng), MANY)["psi"] for _ in range(200)]
    assert np.mean(np.array(psis) > 0.1) > 0.5  # PSI's "watch" level passed by chance in most windows


def test_a_shift_of_the_frequencies_is_flagged():
    rng = np.random.default_rng(4)
    shifted = {"red": 300, "green": 300, "blue": 350, "grey": 40, "teal": 10}  # blue up from 15% to 35%
    results = [drift(drawn(shifted, 200, rng), COLOURS) for _ in range(200)]
    assert np.mean([r["chi2_flag"] for r in results]) > 0.95
    one = results[0]
    assert one["status"] == "flag" and one["chi2_pvalue"] < 0.01 and not one["unseen_flag"]
    shares = {c["category"]: c for c in one["categories"]}
    assert shares["blue"]["train_share"] == pytest.approx(150 / 1000) and shares["blue"]["live_share"] > 0.25
    assert sum(c["live_count"] for c in one["categories"]) == one["n"] == 200


def test_unseen_categories_are_a_bin_of_their_own():
    rng = np.random.default_rng(5)
    values = drawn(COLOURS, 180, rng) + ["purple"] * 12 + ["ochre"] * 8
    f = drift(values, COLOURS)
    assert f["unseen"]["count"] == 20 and f["unseen"]["share"] == pytest.approx(0.1)
    assert [u["category"] for u in f["unseen"]["named"]] == ["purple", "ochre"]
    assert f["unseen_flag"] and f["flag"] and f["bins"]["labels"][-1] == UNSEEN
    assert f["bins"]["actual"][-1] == pytest.approx(0.1) and f["bins"]["expected"][-1] == 0
    assert f["chi2_flag"]  # 10% in a bin training never filled: the counts differ too
    few_unseen = drift(drawn(COLOURS, 196, rng) + ["purple"] * 4, COLOURS)
    assert not few_unseen["unseen_flag"]  # 2% is under category_unseen (5%)


def test_too_few_values_are_not_judged():
    f = drift(["teal"] * 29, COLOURS)  # far from training, but 29 values
    assert f["status"] == "too_few" and f["judged_from"] == THRESHOLDS.min_n and not f["flag"]
    assert drift(["teal"] * 30, COLOURS)["status"] == "flag"
    assert drift([], COLOURS)["psi"] is None and drift([], COLOURS)["chi2"] is None


def test_the_rarest_columns_are_pooled_until_expected_counts_reach_five():
    train = np.array([500, 300, 150, 40, 10, 0])
    live = np.array([50, 30, 15, 4, 1, 0])  # proportional: no difference at all
    statistic, p, dof = chi_square(train, live)
    assert statistic == pytest.approx(0) and p == pytest.approx(1)
    assert dof == 3  # the empty column dropped; teal (1 expected live) pooled with grey (4): 4 columns left
    assert chi_square(np.array([10, 0]), np.array([0, 0])) is None  # no live value: no test


def test_thresholds_come_from_config(tmp_path):
    from decider.config import ConfigError, load_settings
    from decider.monitoring.service import thresholds_of

    path = tmp_path / "config.toml"
    path.write_text("[monitoring]\ncategory_pvalue = 0.001\ncategory_unseen = 0.2\n")
    t = thresholds_of(load_settings(path).monitoring)
    assert (t.category_pvalue, t.category_unseen) == (0.001, 0.2)
    rng = np.random.default_rng(6)
    values = drawn(COLOURS, 180, rng) + ["purple"] * 20
    assert drift(values, COLOURS)["unseen_flag"] and not drift(values, COLOURS, t)["unseen_flag"]
    path.write_text("[monitoring]\ncategory_pvalue = 1.5\n")
    with pytest.raises(ConfigError, match="monitoring.category_pvalue"):
        load_settings(path)


def card() -> dict:
    """A card by hand: one numeric feature, one category feature with its training counts."""
    sample = np.round(np.random.default_rng(0).normal(0, 1, 1000), 3)
    return {
        "id": "hand-v1", "features": ["x", "colour"], "classes": ["a", "b"],
        "class_distribution": {"a": 0.5, "b": 0.5}, "test": {"accuracy": 0.9},
        "contract": {"fields": {"x": {"type": "number"},
                                "colour": {"type": "category", "categories": list(COLOURS)}}},
        "feature_stats": {
            "x": {"n": 1000, "min": float(sample.min()), "max": float(sample.max()), "mean": float(sample.mean()),
                  "quantiles": np.quantile(sample, np.linspace(0, 1, 21)).tolist(), "sample": sample.tolist()},
            "colour": {"n": 1000, "counts": COLOURS},
        },
    }


def store(engine, colours: list[str], start, rng: np.random.Generator,  # type: ignore[no-untyped-def]
          step: timedelta = timedelta(minutes=1)) -> None:
    """Cases with these colours (and a normal x), one a `step` from `start`; some queued and reviewed."""
    rows = []
    for i, colour in enumerate(colours):
        confidence = float(rng.uniform(0.5, 1))
        auto = confidence >= 0.9
        at = start + i * step
        rows.append({
            "key": f"k{start.timestamp()}-{i}", "client": "test",
            "features": {"x": round(float(rng.normal()), 3), "colour": colour},
            "novelty": [], "model_version": "hand-v1", "prediction": "a" if i % 3 else "b", "confidence": confidence,
            "level": "partial", "effective_level": "partial", "threshold": 0.9, "policy_version": "p1",
            "route": "auto" if auto else "queue", "status": "decided" if auto else "pending",
            "decision": "a" if auto else None, "audit": False, "audit_probability": 0.0 if auto else None,
            "review_status": None if auto else ("done" if i % 2 else "pending"),
            "review_label": None if auto or not i % 2 else "a", "reviewed_at": None if auto or not i % 2 else at,
            "created_at": at})
    with engine.begin() as conn:
        conn.execute(insert(CASE), rows)


def from_rows(engine, card: dict) -> dict:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(CASE).order_by(CASE.c.created_at, CASE.c.id)).mappings()]
    return compute(rows, card, since=None, until=now(), last=None, audit_rates={})


def test_category_drift_from_the_cache_equals_the_rows_and_is_shown(tmp_path, db_url):
    """Before the shift nothing is flagged; after it, the chi-square test is. The cache's first read (columns,
    the JSON taken apart by the database) gives the figures the case rows give; the report shows them."""
    upgrade(db_url)
    hand = card()
    rng = np.random.default_rng(8)
    engine = make_engine(db_url)
    try:
        start = now() - timedelta(hours=20)
        store(engine, drawn(COLOURS, 400, rng), start, rng)
        steady = monitoring_figures(engine=engine, card=hand, since=start - timedelta(hours=1))
        [colour] = steady["drift"]["categories"]
        assert colour["n"] == 400 and colour["status"] == "ok" and not steady["drift"]["flagged"]
        assert [f["name"] for f in steady["drift"]["features"]] == ["x"]  # the numeric one, as before
        assert not [f for f in steady["flags"] if f["figure"].startswith("drift.colour")]
        # Just arrived (the cache adds the cases created since its last look, less a minute).
        store(engine, drawn({"blue": 6, "red": 3, "green": 1}, 300, rng) + ["purple"] * 30,
              now() - timedelta(seconds=30), rng, step=timedelta(milliseconds=50))
        shifted = monitoring_figures(engine=engine, card=hand, since=start - timedelta(hours=1))
        [colour] = shifted["drift"]["categories"]
        assert colour["n"] == 730 and colour["chi2_flag"] and colour["unseen"]["count"] == 30
        assert {"drift.colour.chi2"} <= {f["figure"] for f in shifted["flags"]}
    finally:
        engine.dispose()
    fresh = make_engine(db_url)  # a new engine: its cache is read afresh, as columns
    try:
        cold = monitoring_figures(engine=fresh, card=hand, since=start - timedelta(hours=1))
        rows = from_rows(fresh, hand)
    finally:
        fresh.dispose()
    assert cold["drift"]["categories"] == shifted["drift"]["categories"] == rows["drift"]["categories"]
    html = render_report(cold, database="test")
    assert 'id="category-table-0"' in html and 'data-feature="colour" data-flag="yes"' in html
    assert 'id="chart-category-0"' in html and 'data-figure="drift.colour.chi2"' in html
    assert '<tr data-category="purple">' not in html and "purple: 30" in html  # unseen, named in its row


def test_psi_helper_is_the_numeric_one():
    """PSI over categories uses drift.psi, with its floor for empty bins (the unseen bin is empty in training)."""
    f = drift(["red"] * 100, {"red": 1, "green": 1})
    assert f["psi"] == pytest.approx(psi(np.array([1.0, 0.0, 0.0]), np.array([0.5, 0.5, 0.0])))


def test_a_model_trained_on_a_csv_with_a_text_column(tmp_path, db_url):
    """registry/training.py's card for a text and a yes/no column, cases through the API, drift on the API and
    the page: steady while the cases are drawn as in training, flagged after the shift. A fresh cache (the
    warm-up's columns) and the cache brought up to date agree; on SQLite true/false come back as 1/0."""
    import csv

    from sklearn.datasets import make_classification

    from decider.monitoring import cache as cache_module
    from decider.registry.training import csv_dataset, train
    from helpers import api, review_headers, settings_for
    from test_monitoring_cold import log_in

    rng = np.random.default_rng(0)
    X, y = make_classification(600, 3, n_informative=2, n_redundant=0, random_state=3)
    colours = rng.choice(list(COLOURS), size=600, p=np.array(list(COLOURS.values())) / 1000)
    with (tmp_path / "data.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "colour", "member", "label"])
        for i in range(600):
            w.writerow([*np.round(X[i], 3), colours[i], "yes" if rng.random() < 0.3 else "no", "p" if y[i] else "q"])
    models = tmp_path / "models"
    train(csv_dataset(tmp_path / "data.csv", "label"), name="cat", version=1, out_dir=models, estimator="logistic")

    def cases(client, h, n: int, p: dict[str, float], member: float) -> None:  # type: ignore[no-untyped-def]
        names = list(p)
        for i in rng.integers(0, 600, n):
            features = {"a": float(X[i, 0]), "b": float(X[i, 1]), "c": float(X[i, 2]),
                        "colour": str(rng.choice(names, p=np.array(list(p.values())) / sum(p.values()))),
                        "member": bool(rng.random() < member)}
            got = client.post("/api/v1/cases", json={"features": features}, headers=h)
            assert got.status_code == 201, got.text

    with api(settings_for(tmp_path, db_url, models_dir=models, live="cat-v1")) as (client, h):
        admin = review_headers(client, "root")
        cases(client, h, 200, dict(COLOURS), 0.3)
        steady = client.get("/api/v1/monitoring", headers=admin).json()
        by_name = {f["name"]: f for f in steady["drift"]["categories"]}
        assert set(by_name) == {"colour", "member"}
        assert {f["name"] for f in steady["drift"]["features"]} == {"a", "b", "c"}
        assert by_name["member"]["unseen"]["count"] == 0, by_name["member"]["unseen"]
        assert by_name["colour"]["n"] == 200
        assert not by_name["colour"]["flag"] and not by_name["member"]["flag"]
        cases(client, h, 200, {"blue": 5, "red": 3, "purple": 2}, 0.9)  # a tenth of all values unseen
        shifted = client.get("/api/v1/monitoring", headers=admin).json()
        figures = {f["figure"] for f in shifted["flags"]}
        assert {"drift.colour.chi2", "drift.colour.unseen", "drift.member.chi2"} <= figures
        cache_module._CACHES.pop(client.app.state.runtime.engine)  # as after a restart: read afresh, as columns
        again = client.get("/api/v1/monitoring", headers=admin).json()
        assert again["drift"]["categories"] == shifted["drift"]["categories"]
        member = {f["name"]: f for f in again["drift"]["categories"]}["member"]
        assert member["unseen"]["count"] == 0 and member["n"] == 400
        log_in(client)
        page = client.get("/monitoring").text
        assert 'id="category-drift"' in page and 'data-feature="colour" data-flag="yes"' in page
        assert 'id="chart-category-1"' in page and '<tr data-category="true">' in page
