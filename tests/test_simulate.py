"""`decider simulate`: stored cases replayed under another policy, checked against figures worked out by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import insert, select

from decider.automation.simulate import simulate, wilson
from decider.cases.tables import Case
from decider.db import make_engine, upgrade
from decider.policy import Level, Policy
from helpers import write_config

CASE = Case.__table__  # type: ignore[attr-defined]
DAY0, DAY1, DAY2 = datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 2, 9, tzinfo=UTC), datetime(
    2026, 3, 3, 23, 30, tzinfo=UTC)

# (prediction, confidence, stored route, review label, outcome, created) — routed then at threshold 0.9.
SEED = [
    ("setosa", 0.99, "auto", None, None, DAY1),  # 1 no label
    ("setosa", 0.95, "auto", "setosa", None, DAY1),  # 2 audit: right
    ("versicolor", 0.92, "auto", "virginica", None, DAY1),  # 3 audit: wrong
    ("versicolor", 0.85, "queue", "versicolor", None, DAY1),  # 4 reviewed; same label
    ("virginica", 0.82, "queue", "versicolor", None, DAY2),  # 5 reviewed; model would be wrong
    ("virginica", 0.80, "queue", "virginica", None, DAY2),  # 6 exactly on 0.8: auto under 0.8
    ("versicolor", 0.70, "queue", "versicolor", None, DAY2),  # 7 still queued at 0.8
    ("virginica", 0.60, "queue", None, None, DAY2),  # 8 not reviewed yet
    ("setosa", 0.97, "auto", "setosa", "versicolor", DAY2),  # 9 the outcome wins over the review: wrong
    (None, None, "queue", "setosa", None, DAY2),  # 10 human_only: no score, cannot be replayed
    ("setosa", 0.99, "auto", "setosa", None, DAY0),  # 11 before --since
]


def seed(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        for i, (prediction, confidence, route, label, outcome, at) in enumerate(SEED, start=1):
            conn.execute(insert(CASE).values(
                key=f"case-{i}", client="tests", features={"x": 1.0}, prediction=prediction,
                confidence=confidence, probabilities=None if prediction is None else {prediction: confidence},
                level="partial", effective_level="partial", threshold=0.9, policy_version="seed", route=route,
                status="decided", decision=prediction if route == "auto" else label, audit=route == "auto",
                review_label=label, outcome=outcome, created_at=at))
    engine.dispose()


def test_wilson_matches_hand_computed_intervals():
    assert wilson(3, 7) == pytest.approx((0.1582, 0.7495), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # z²/(n+z²) = 3.8415/13.8415
    assert wilson(0, 0) == (0.0, 1.0)


def test_replay_at_a_lower_threshold(tmp_path, db_url):
    seed(db_url)
    engine = make_engine(db_url)
    report = simulate(engine, Policy(level=Level.PARTIAL, threshold=0.8))
    r, n = report.routed, report.replayed
    # 10 scored cases (case 10 has no score). As routed: 1, 2, 3, 9, 11 auto.
    assert (r.cases, r.auto, r.queued) == (10, 5, 5)
    assert r.queue_by_day == {"2026-03-02": 1, "2026-03-03": 4}
    assert (r.labelled_auto, r.errors) == (4, 2)  # 2, 11 right; 3, 9 wrong
    # At 0.8 cases 4, 5, 6 join them; 7 and 8 stay queued.
    assert (n.cases, n.auto, n.queued) == (10, 8, 2)
    assert n.queue_by_day == {"2026-03-03": 2}
    assert (n.labelled_auto, n.errors) == (7, 3)  # 3, 5, 9 wrong
    assert n.error_rate == pytest.approx(3 / 7)
    assert n.error_ci == pytest.approx((0.1582, 0.7495), abs=1e-4)
    engine.dispose()


def test_replay_since_a_date_and_at_other_levels(tmp_path, sqlite_url):
    seed(sqlite_url)
    engine = make_engine(sqlite_url)
    since = simulate(engine, Policy(level=Level.PARTIAL, threshold=0.8), since=date(2026, 3, 2))
    assert (since.routed.cases, since.routed.auto, since.routed.labelled_auto, since.routed.errors) == (9, 4, 3, 2)
    assert (since.replayed.auto, since.replayed.labelled_auto, since.replayed.errors) == (7, 6, 3)
    full = simulate(engine, Policy(level=Level.FULL)).replayed
    assert (full.auto, full.labelled_auto, full.errors) == (10, 8, 3)  # every labelled case: 3, 5, 9 wrong
    assert full.queue_by_day == {}
    for policy in (Policy(level=Level.ASSIST), Policy(level=Level.FULL, rollout_percent=0)):
        none = simulate(engine, policy).replayed
        assert (none.auto, none.queued, none.error_rate) == (0, 10, None)
    engine.dispose()


def test_command_prints_figures_and_writes_nothing(tmp_path, sqlite_url):
    seed(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        before = conn.execute(select(CASE).order_by(CASE.c.id)).all()
    other = tmp_path / "other.toml"
    other.write_text(write_config(tmp_path, sqlite_url).read_text().replace("threshold = 0.9", "threshold = 0.8"))
    run = [sys.executable, "-m", "decider", "simulate", "--config", str(other)]
    text = subprocess.run(run + ["--since", "2026-03-02"], capture_output=True, text=True, check=True)
    assert "9 scored cases since 2026-03-02" in text.stdout
    assert "4 (44.4%)" in text.stdout and "7 (77.8%)" in text.stdout  # auto-decided: as routed, replayed
    assert "2/3 = 66.7%" in text.stdout and "3/6 = 50.0% (95% CI 18.8%–81.2%)" in text.stdout
    assert "2026-03-03" in text.stdout
    assert "replaying" not in text.stderr  # the progress bar is for terminals, not logs
    out = subprocess.run(run + ["--json"], capture_output=True, text=True, check=True).stdout
    figures = json.loads(out)
    assert figures["replayed"]["auto"] == 8 and figures["as_routed"]["auto"] == 5
    assert figures["replayed"]["queue_by_day"] == {"2026-03-03": 2}
    assert figures["replayed"]["error_ci95"] == pytest.approx([0.1582, 0.7495], abs=1e-4)
    with engine.connect() as conn:
        assert conn.execute(select(CASE).order_by(CASE.c.id)).all() == before
    engine.dispose()


def test_command_names_a_bad_config_key(tmp_path, sqlite_url):
    bad = write_config(tmp_path, sqlite_url, level="sometimes")
    done = subprocess.run([sys.executable, "-m", "decider", "simulate", "--config", str(bad)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "automation.level" in done.stderr
