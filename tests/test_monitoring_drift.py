"""Drift of inputs: a stream drawn from the training distribution, then shifted, through the real API.

PSI and KS are recomputed here straight from numpy and scipy, from the card's statistics, following the
definition documented in decider/monitoring/drift.py and README.md (Monitoring).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from decider.monitoring.drift import class_drift, feature_drift
from decider.registry.cards import read_card
from helpers import MODELS, api, review_headers, settings_for, submit

CARD = read_card(MODELS / "iris-v1.json")
FEATURES = CARD["features"]
SHIFT = {"sepal length (cm)": 0.9, "petal width (cm)": 0.6}
N = 300


def expected_psi(live: np.ndarray, feature_stats: dict) -> float:
    """PSI computed independently: np.histogram over the training-quantile edges, empty training bins merged
    upwards, shares floored at 1e-4."""
    sample = np.asarray(feature_stats["sample"])
    edges = sorted(set(feature_stats["quantiles"][1:-1]))
    while True:
        bins = [-np.inf, *edges, np.inf]
        train = np.histogram(sample, bins=bins)[0] / len(sample)
        empty = [i for i, share in enumerate(train) if share == 0]
        if not empty:
            break
        del edges[min(empty[0], len(edges) - 1)]
    actual = np.histogram(live, bins=bins)[0] / len(live)
    a, e = np.clip(actual, 1e-4, None), np.clip(train, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def draw(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> list[dict[str, float]]:
    """n inputs resampled from each feature's training values, moved by `shift`."""
    columns = {f: rng.choice(CARD["feature_stats"][f]["sample"], n) + (shift or {}).get(f, 0.0) for f in FEATURES}
    return [{f: round(float(columns[f][i]), 2) for f in FEATURES} for i in range(n)]


def by_name(figures: dict) -> dict[str, dict]:
    return {f["name"]: f for f in figures["drift"]["features"]}


def check_against_independent(found: dict, live: list[dict[str, float]]) -> None:
    for name in FEATURES:
        values = np.array([x[name] for x in live])
        feature_stats = CARD["feature_stats"][name]
        f = found[name]
        assert f["n"] == len(values)
        assert f["psi"] == pytest.approx(expected_psi(values, feature_stats), rel=1e-9)
        ks = stats.ks_2samp(values, np.asarray(feature_stats["sample"]))
        assert f["ks_statistic"] == pytest.approx(ks.statistic, rel=1e-9)
        assert f["ks_pvalue"] == pytest.approx(ks.pvalue, rel=1e-6)
        outside = np.mean((values < feature_stats["min"]) | (values > feature_stats["max"]))
        assert f["out_of_range_share"] == pytest.approx(outside)


def test_drift_is_flagged_only_after_the_shift(tmp_path, db_url):
    rng = np.random.default_rng(20261125)
    steady, shifted = draw(rng, N), draw(rng, N, SHIFT)
    with api(settings_for(tmp_path, db_url)) as (client, h):
        admin = review_headers(client, "root")
        for features in steady:
            submit(client, h, features)
        before = client.get("/api/v1/monitoring", params={"last": N}, headers=admin).json()
        between = datetime.now(UTC)
        for features in shifted:
            submit(client, h, features)
        after = client.get("/api/v1/monitoring", params={"last": N}, headers=admin).json()
        since_shift = client.get("/api/v1/monitoring", params={"since": between.isoformat()}, headers=admin).json()

    assert before["window"]["cases"] == N and not before["drift"]["flagged"]
    assert not [f for f in before["flags"] if f["figure"].startswith("drift.")]
    for f in by_name(before).values():
        assert (f["psi_flag"], f["ks_flag"], f["out_of_range_flag"]) == (False, False, False)
        assert f["psi"] < 0.2 and f["ks_pvalue"] >= 0.01
    check_against_independent(by_name(before), steady)

    assert after["drift"]["flagged"]
    for name in FEATURES:
        f = by_name(after)[name]
        assert f["psi_flag"] and f["ks_flag"], f
        assert f["psi"] > 0.2 and f["ks_pvalue"] < 0.01
        assert f"drift.{name}.psi" in {flag["figure"] for flag in after["flags"]}
    check_against_independent(by_name(after), shifted)

    # A time window gives the same figures as the last-N window over the same cases.
    assert since_shift["window"]["cases"] == N
    assert by_name(since_shift)["petal width (cm)"]["psi"] == pytest.approx(by_name(after)["petal width (cm)"]["psi"])


def test_out_of_range_share_and_its_flag():
    feature_stats = CARD["feature_stats"]["petal width (cm)"]
    inside = [0.2] * 95
    f = feature_drift("petal width (cm)", inside + [3.0] * 5, feature_stats)
    assert f["out_of_range_share"] == pytest.approx(0.05) and not f["out_of_range_flag"]
    f = feature_drift("petal width (cm)", inside + [3.0] * 6 + [-1.0], feature_stats)
    assert f["out_of_range_share"] == pytest.approx(7 / 102) and f["out_of_range_flag"]


def test_too_few_live_values_are_never_flagged():
    feature_stats = CARD["feature_stats"]["sepal length (cm)"]
    few = feature_drift("sepal length (cm)", [9.0] * 29, feature_stats)
    assert few["too_few"] and not few["flag"] and few["psi"] > 0.2
    some = feature_drift("sepal length (cm)", [9.0] * 30, feature_stats)
    assert some["flag"] and some["ks_flag"] and some["out_of_range_flag"]
    assert some["too_few_for_psi"] and not some["psi_flag"]  # PSI is judged from 200 values
    many = feature_drift("sepal length (cm)", [9.0] * 200, feature_stats)
    assert many["psi_flag"] and not many["too_few_for_psi"]


def test_a_figure_short_of_values_is_too_few_never_ok():
    """The verdict shown as a badge: too few values leave a figure unjudged, whatever its value."""
    stats = CARD["feature_stats"]["sepal length (cm)"]
    inside = list(np.linspace(stats["min"], stats["max"], 29))
    few = feature_drift("sepal length (cm)", inside, stats)
    assert few["psi"] > 0.2 and (few["status"], few["judged_from"]) == ("too_few", 30)
    # 30 to 199 values: KS and the range are judged and pass, PSI is not judged yet.
    some = feature_drift("sepal length (cm)", list(np.linspace(stats["min"], stats["max"], 60)), stats)
    assert not some["flag"] and (some["status"], some["judged_from"]) == ("too_few", 200)
    flagged = feature_drift("sepal length (cm)", [9.0] * 30, stats)  # a flag from enough values stands
    assert (flagged["status"], flagged["judged_from"]) == ("flag", None)
    rng = np.random.default_rng(0)
    steady = feature_drift("sepal length (cm)", list(rng.choice(stats["sample"], 400)), stats)
    assert steady["status"] in ("ok", "watch") and steady["judged_from"] is None
    train = CARD["class_distribution"]
    skewed = class_drift({"setosa": 20}, train)
    assert skewed["psi"] > 0.2 and not skewed["flag"]
    assert (skewed["status"], skewed["judged_from"]) == ("too_few", 100)
    assert class_drift({"setosa": 100}, train)["status"] == "flag"
    assert class_drift(dict.fromkeys(train, 40), train)["status"] == "ok"


def test_steady_samples_below_200_would_trip_psi_so_it_waits():
    """Why PSI waits for 200 values: 50 values drawn from the training data itself already pass 0.2."""
    rng = np.random.default_rng(1)
    feature_stats = CARD["feature_stats"]["sepal length (cm)"]
    small = feature_drift("sepal length (cm)", rng.choice(feature_stats["sample"], 50), feature_stats)
    assert small["psi"] > 0.2 and not small["psi_flag"] and not small["flag"]


def test_empty_live_bins_use_epsilon():
    feature_stats = CARD["feature_stats"]["sepal length (cm)"]
    live = np.full(50, 5.0)  # every value in one bin: all other bins empty on the live side
    f = feature_drift("sepal length (cm)", live, feature_stats)
    assert np.isfinite(f["psi"])
    assert f["psi"] == pytest.approx(expected_psi(live, feature_stats))


def test_window_parameters_are_checked(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        admin = review_headers(client, "root")
        bad = client.get("/api/v1/monitoring", params={"last": 0}, headers=admin)
        assert bad.status_code == 422 and bad.json()["field"] == "query.last"
        bad = client.get("/api/v1/monitoring", params={"since": "yesterday"}, headers=admin)
        assert bad.status_code == 422 and bad.json()["field"] == "query.since"
        bad = client.get("/api/v1/monitoring",
                         params={"since": "2026-01-02", "until": "2026-01-01"}, headers=admin)
        assert bad.status_code == 422 and bad.json()["field"] == "query.since"
        assert client.get("/api/v1/monitoring").status_code == 401
        empty = client.get("/api/v1/monitoring", params={"since": "2026-01-01", "bucket": "day"}, headers=admin)
        assert empty.status_code == 200 and empty.json()["window"]["cases"] == 0
