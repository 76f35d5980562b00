"""Novel inputs in monitoring: the figure and its flags, the /metrics counter, and extreme values on the page.

Pure: synthetic case rows (as queries.window_rows gives them) through figures.compute, record_case and the
templates; no database.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from decider.monitoring import metrics
from decider.monitoring.drift import Thresholds
from decider.monitoring.figures import compute
from decider.monitoring.queries import COLUMNS
from decider.monitoring.report import render_report
from decider.registry.cards import read_card
from decider.web.pages import templates
from helpers import MODELS, SETOSA

CARD = read_card(MODELS / "iris-v1.json")
UNTIL = datetime(2026, 11, 25, 12, tzinfo=UTC)
SEPAL, PETAL = "sepal length (cm)", "petal width (cm)"


def reason(kind: str, feature: str | None = None, message: str = "") -> dict[str, Any]:
    return {"kind": kind, "feature": feature, "message": message or f"{feature or 'input'} is unusual"}


def row(i: int, novelty: list[dict[str, Any]] | None, *, route: str = "queue",
        features: dict[str, float] | None = None) -> dict[str, Any]:
    """One case with every column the monitoring query reads (queries.COLUMNS), its features as a mapping."""
    auto = route == "auto"
    r = {"id": i, "created_at": UNTIL - timedelta(hours=1) + timedelta(seconds=i), "model_version": "iris-v1",
         "features": features or dict(SETOSA), "prediction": "setosa", "confidence": 0.95 if auto else 0.6,
         "route": route, "status": "decided" if auto else "pending", "decision": "setosa" if auto else None,
         "decided_by": "model" if auto else None, "audit": False, "review_status": None if auto else "pending",
         "review_label": None, "reviewed_at": None, "outcome": None, "outcome_at": None, "novelty": novelty,
         "policy_version": "p1", "audit_probability": 0.0 if auto else None}
    assert set(COLUMNS) <= set(r)
    return r


def figures(rows: list[dict[str, Any]], thresholds: Thresholds | None = None) -> dict[str, Any]:
    kw = {"thresholds": thresholds} if thresholds else {}
    return compute(rows, CARD, since=UNTIL - timedelta(days=1), until=UNTIL, last=None, **kw)


def novelty_flags(fig: dict[str, Any]) -> set[str]:
    return {f["figure"] for f in fig["flags"] if f["figure"].startswith("novelty.")}


def mixed_window() -> list[dict[str, Any]]:
    """45 cases: 5 not checked, 36 ordinary, 4 novel (one of them decided by the model)."""
    rows = [row(i, None) for i in range(5)] + [row(5 + i, []) for i in range(36)]
    rows += [
        row(41, [reason("range", SEPAL, "sepal = 40, trained on 4.3–7.9")]),
        row(42, [reason("range", SEPAL, "sepal = 50, trained on 4.3–7.9"),
                 reason("range", PETAL, "petal = 9, trained on 0.1–2.5")]),  # two range reasons: one "range"
        row(43, [reason("range", SEPAL, "sepal = 60, trained on 4.3–7.9"), reason("combination")], route="auto"),
        row(44, [reason("unscorable")]),
    ]
    return rows


def test_novel_inputs_are_counted_by_kind_route_and_feature():
    nv = figures(mixed_window())["novelty"]
    assert (nv["checked"], nv["unchecked"], nv["novel"]) == (40, 5, 4)
    assert nv["share"] == pytest.approx(4 / 40)
    assert (nv["auto"], nv["queued"]) == (1, 3)
    assert nv["by_kind"] == {"range": 3, "combination": 1, "unscorable": 1}
    assert nv["top_features"] == [
        {"feature": SEPAL, "count": 3, "example": "sepal = 60, trained on 4.3–7.9"},  # the newest message
        {"feature": PETAL, "count": 1, "example": "petal = 9, trained on 0.1–2.5"},
    ]


def test_top_features_are_the_five_most_often_out_of_range():
    rows = [row(i, []) for i in range(30)]
    counts = {"a": 1, "b": 7, "c": 3, "d": 5, "e": 2, "f": 6, "g": 4}
    i = 100
    for feature, n in counts.items():
        for _ in range(n):
            rows.append(row(i, [reason("range", feature)]))
            i += 1
    top = figures(rows)["novelty"]["top_features"]
    assert [(f["feature"], f["count"]) for f in top] == [("b", 7), ("f", 6), ("d", 5), ("g", 4), ("c", 3)]


def test_share_past_threshold_is_flagged_from_enough_checked_cases():
    fig = figures(mixed_window())  # 10% of 40 checked > 5%, and one novel case decided by the model
    assert novelty_flags(fig) == {"novelty.share", "novelty.auto"}
    assert fig["novelty"]["status"] == "flag"
    assert fig["thresholds"]["novelty_share"] == 0.05 and fig["thresholds"]["novelty_min_n"] == 30
    # Under the share: 1 queued novel case in 40 checked (2.5%).
    calm = figures([row(i, []) for i in range(39)] + [row(39, [reason("range", SEPAL)])])
    assert not novelty_flags(calm) and calm["novelty"]["status"] == "ok"
    # Past the share but from too few checked cases (2 of 10): not judged, never "ok".
    few_rows = [row(i, []) for i in range(8)] + [row(8 + i, [reason("unscorable")]) for i in range(2)]
    few = figures(few_rows)
    assert few["novelty"]["share"] == pytest.approx(0.2) and not novelty_flags(few)
    assert (few["novelty"]["status"], few["novelty"]["judged_from"]) == ("too_few", 30)
    # A stricter or looser threshold comes from Thresholds.
    assert "novelty.share" not in novelty_flags(figures(mixed_window(), Thresholds(novelty_share=0.2)))
    assert novelty_flags(figures(few_rows, Thresholds(novelty_min_n=10))) == {"novelty.share"}


def test_a_novel_case_decided_by_the_model_is_always_flagged():
    fig = figures([row(0, [reason("range", PETAL)], route="auto")])  # one checked case: far below novelty_min_n
    assert novelty_flags(fig) == {"novelty.auto"}
    assert fig["novelty"]["auto_flag"] and not fig["novelty"]["share_flag"] and fig["novelty"]["status"] == "flag"
    (message,) = [f["message"] for f in fig["flags"] if f["figure"] == "novelty.auto"]
    assert "1 case " in message and "decided by the model" in message


def test_unchecked_cases_are_left_out():
    nv = figures([row(i, None, route="auto") for i in range(40)])["novelty"]
    assert (nv["checked"], nv["unchecked"], nv["novel"], nv["share"], nv["auto"]) == (0, 40, 0, None, 0)
    assert not nv["flag"] and nv["top_features"] == []
    legacy = dict(row(0, None))
    del legacy["novelty"]  # a row from before the column: as not checked
    assert figures([legacy])["novelty"]["checked"] == 0


def novel_counts() -> dict[tuple[str, str], float]:
    return {(s.labels["kind"], s.labels["route"]): s.value
            for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
            for s in family.samples if s.name == "decider_novel_cases_total"}


def test_record_case_counts_each_kind_once_per_case(monkeypatch):
    before = novel_counts()
    metrics.record_case(row(0, [reason("range", SEPAL), reason("range", PETAL)]))  # once for "range"
    metrics.record_case(row(1, [reason("range", SEPAL), reason("combination")], route="auto"))
    metrics.record_case(row(2, [reason("unscorable")]))
    metrics.record_case(row(3, []))
    metrics.record_case(row(4, None, route="auto"))
    metrics.record_case(row(5, [reason("something new")]))  # an unknown kind keeps the series bounded
    after = novel_counts()

    def moved(kind: str, route: str) -> float:
        return after.get((kind, route), 0.0) - before.get((kind, route), 0.0)

    assert moved("range", "queue") == 1 and moved("range", "auto") == 1
    assert moved("combination", "auto") == 1 and moved("combination", "queue") == 0
    assert moved("unscorable", "queue") == 1 and moved("unscorable", "auto") == 0
    assert moved("other", "queue") == 1 and ("something new", "queue") not in after
    assert sum(after.values()) - sum(before.values()) == 5

    # The hot path reuses the labelled children: no new `labels` lookup for a series already seen.
    def no_lookup(*args: str) -> None:
        raise AssertionError(f"labels{args} looked up again")

    monkeypatch.setattr(metrics.NOVEL_CASES, "labels", no_lookup)
    monkeypatch.setattr(metrics.CASES, "labels", no_lookup)
    metrics.record_case(row(6, [reason("range", SEPAL)]))
    assert novel_counts()[("range", "queue")] == after[("range", "queue")] + 1


def test_the_novelty_figure_is_shown_with_its_explanation():
    html = templates.env.get_template("monitoring_figures.html").render(fig=figures(mixed_window()))
    assert 'id="novelty-table"' in html and 'id="novelty-features-table"' in html
    for figure in ("novelty.share", "novelty.auto"):
        assert f'data-figure="{figure}"' in html
    assert "outside the range the model was trained on" in html and "automation.novelty" in html
    table = re.search(r'<table class="table" id="novelty-table">.*?</table>', html, re.S)[0]
    assert re.search(r'data-kind="range">3<', table) and re.search(r'data-kind="unscorable">1<', table)
    assert "10.0%" in table and 'data-status="flag"' in table
    assert 'data-flag="yes"' not in table  # that attribute counts flagged drift rows
    features = re.search(r'id="novelty-features-table">.*?</table>', html, re.S)[0]
    assert features.index(SEPAL) < features.index(PETAL) and "sepal = 60, trained on 4.3–7.9" in features

    quiet = templates.env.get_template("monitoring_figures.html").render(fig=figures([row(0, None)]))
    assert "none checked" in quiet and 'id="novelty-features-table"' not in quiet
    assert not re.search(r'data-figure="novelty\.', quiet)


def huge_window() -> list[dict[str, Any]]:
    """Clients sent 1e300 (and -1e300): every drift figure and the live means are extreme."""
    rows = [row(i, [], features={SEPAL: 1e300, PETAL: 0.2}) for i in range(250)]
    rows += [row(250 + i, [], features={SEPAL: 5.0, PETAL: -1e300}) for i in range(10)]
    return rows


def long_digit_runs(html: str) -> list[str]:
    return re.findall(r"\d{20,}", html)


def test_extreme_values_render_without_runs_of_digits():
    fig = figures(huge_window())
    drift = {f["name"]: f for f in fig["drift"]["features"]}
    assert drift[SEPAL]["live_mean"] > 1e299 and drift[PETAL]["live_mean"] < -1e298
    page = templates.env.get_template("monitoring_figures.html").render(fig=fig)
    assert not long_digit_runs(page)
    row_html = re.search(r'<tr data-feature="sepal length \(cm\)".*?</tr>', page, re.S)[0]
    assert "e+299" in row_html or "e+300" in row_html  # the live mean, in %g form

    report = render_report(fig, database="sqlite:///test.db")
    # The inlined Chart.js and stylesheet are not ours to judge; the figures' JSON block and the markup are.
    markup = re.sub(r"<style>.*?</style>|<script>.*?</script>", "", report, flags=re.S)
    assert 'id="drift-table"' in markup and 'id="monitoring-figures"' in markup
    assert not long_digit_runs(markup)
