"""The time axis of the monitoring charts: a step fitted to the span the window's cases cover, an axis that starts
at the first case, and a label on every k-th tick. Pure (monitoring/buckets.py and figures.compute), no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from decider.monitoring import buckets
from decider.monitoring.figures import compute
from decider.registry.cards import read_card
from helpers import MODELS, SETOSA

CARD = read_card(MODELS / "iris-v1.json")
NOW = datetime(2026, 11, 25, 14, 37, tzinfo=UTC)


def row(i: int, at: datetime) -> dict:
    return {"id": i, "created_at": at, "model_version": "iris-v1", "features": dict(SETOSA), "prediction": "setosa",
            "confidence": 0.95, "route": "auto", "status": "decided", "decision": "setosa", "decided_by": "model",
            "audit": False, "review_status": None, "review_label": None, "reviewed_at": None, "outcome": None,
            "outcome_at": None, "novelty": [], "policy_version": "p1", "audit_probability": 0.0}


def window(first: timedelta, n: int = 50) -> list[dict]:
    """n cases spread evenly from `first` ago to a minute ago."""
    start = NOW - first
    step = (first - timedelta(minutes=1)) / max(n - 1, 1)
    return [row(i, start + i * step) for i in range(n)]


@pytest.mark.parametrize(("span", "hours", "name"), [
    (timedelta(minutes=20), 1, "hour"), (timedelta(hours=20), 1, "hour"), (timedelta(days=2), 1, "hour"),
    (timedelta(days=7), 3, "3 hours"), (timedelta(days=29), 12, "12 hours"), (timedelta(days=30), 24, "day"),
    (timedelta(days=90), 48, "2 days"),
    (timedelta(days=400), 24 * 7, "week")])
def test_the_step_fits_the_span_of_the_data_in_at_most_60_buckets(span, hours, name):
    step = buckets.choose(NOW - span, NOW)
    assert (step.hours, step.name) == (hours, name)
    starts = buckets.starts(NOW - span, NOW, step)
    assert 1 <= len(starts) <= buckets.MAX_BUCKETS
    shorter = [h for h in buckets.LADDER_HOURS if h < hours]
    if shorter:  # the shortest step that fits: the next one down would draw too many
        assert buckets.count(NOW - span, NOW, buckets.Step(shorter[-1])) > buckets.MAX_BUCKETS


def test_a_day_old_service_in_the_default_window_is_drawn_in_hours_from_its_first_case():
    fig = compute(window(timedelta(hours=20)), CARD, since=NOW - timedelta(days=7), until=NOW, last=None)
    w, timeline = fig["window"], fig["timeline"]
    assert (w["bucket"], w["bucket_hours"]) == ("hour", 1)
    first = datetime.fromisoformat(w["first_case"])
    assert timeline[0]["start"] == first.replace(minute=0, second=0, microsecond=0).isoformat()
    assert timeline[-1]["start"] == NOW.replace(minute=0).isoformat()
    assert len(timeline) == 21 and all(b["cases"] for b in timeline[:-1])  # no stretch of empty days before it
    assert sum(b["cases"] for b in timeline) == 50


def test_every_bucket_has_a_full_label_and_every_kth_a_tick_on_round_times():
    starts = buckets.starts(NOW - timedelta(days=7), NOW, buckets.Step(3))
    full, ticks = buckets.labels(starts, buckets.Step(3))
    assert len(full) == len(ticks) == len(starts) and all(full)
    shown = [(s, t) for s, t in zip(starts, ticks, strict=True) if t]
    assert 5 <= len(shown) <= buckets.MAX_TICKS
    assert all(s.hour == 0 for s, _ in shown)  # 3-hour buckets ticked once a day, at midnight
    assert all(t == [f"{s:%H:%M}", f"{s:%m-%d}"] for s, t in shown)  # each a new day: the date beneath
    assert full[0] == f"{starts[0]:%Y-%m-%d %H:%M}–{starts[0] + timedelta(hours=3):%H:%M} UTC"

    few = buckets.starts(NOW - timedelta(hours=5), NOW, buckets.Step(1))
    _, ticks = buckets.labels(few, buckets.Step(1))
    assert ticks == [["09:00", "11-25"], "10:00", "11:00", "12:00", "13:00", "14:00"]  # all six labelled

    days = buckets.starts(NOW - timedelta(days=90), NOW, buckets.Step(48))
    _, ticks = buckets.labels(days, buckets.Step(48))
    assert ticks[0] == [f"{days[0]:%m-%d}", "2026"] and sum(1 for t in ticks if t) <= buckets.MAX_TICKS


def test_one_bucket_and_no_cases():
    fig = compute([row(0, NOW - timedelta(minutes=5))], CARD, since=NOW - timedelta(days=7), until=NOW, last=None)
    (only,) = fig["timeline"]
    assert only["tick"] == ["14:00", "11-25"] and only["cases"] == 1
    empty = compute([], CARD, since=NOW - timedelta(days=7), until=NOW, last=None)
    assert empty["timeline"] == [] and empty["window"]["first_case"] is None


def test_a_named_step_is_kept_and_days_start_at_midnight():
    fig = compute(window(timedelta(days=3)), CARD, since=NOW - timedelta(days=7), until=NOW, last=None, bucket="day")
    assert fig["window"]["bucket"] == "day" and len(fig["timeline"]) == 4
    assert all(b["start"].endswith("T00:00:00+00:00") for b in fig["timeline"])
    hourly = compute(window(timedelta(days=3)), CARD, since=None, until=NOW, last=None, bucket="hour")
    assert hourly["window"]["bucket"] == "hour" and len(hourly["timeline"]) == 73
