"""Quality figures corrected for how labels were gathered: with outcomes only for automatic decisions the
plain figure overstates; the corrected accuracy covers the truth at its stated rate."""

from __future__ import annotations

import numpy as np

from decider.certify import corrected_accuracy, counts_of
from decider.monitoring.figures import quality


def window(rng: np.random.Generator, audit_rate: float = 0.1) -> tuple[list[dict], float]:
    """300 confident cases the model decides (95% right), 700 it queues (45% right): true accuracy 60%.
    Every queued case is reviewed; audits draw automatic decisions at `audit_rate`; outcomes arrive only for
    automatic decisions, as when the client reports back only on what it acted on."""
    rows, right = [], 0
    for i in range(1000):
        auto = i < 300
        correct = rng.random() < (0.95 if auto else 0.45)
        right += correct
        truth = "a" if correct else "b"
        audited = auto and rng.random() < audit_rate
        rows.append({"prediction": "a", "confidence": 0.97 if auto else 0.6, "route": "auto" if auto else "queue",
                     "audit": audited, "review_status": "done" if (audited or not auto) else None,
                     "review_label": truth if (audited or not auto) else None, "decision": "a" if auto else truth,
                     "outcome": truth if auto else None, "model_version": "m-v1", "policy_version": "p"})
    return rows, right / 1000


def test_outcomes_only_on_automatic_decisions_no_longer_overstate():
    rows, truth = window(np.random.default_rng(0))
    plain = quality(rows, {"p": 0.1})["overall"]["model_accuracy"]["value"]
    corrected = corrected_accuracy(counts_of(rows, {"p": 0.1}))
    assert plain > 0.9 and abs(truth - 0.6) < 0.05  # the outcomes figure reads like 90%+
    assert corrected["low"] <= truth <= corrected["high"] and abs(corrected["value"] - truth) < 0.05
    assert corrected["labelled"] == 700 + sum(r["audit"] for r in rows) and corrected["cases"] == 1000


def test_the_corrected_interval_covers_the_truth_at_its_rate():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(300):
        rows, truth = window(rng)
        c = corrected_accuracy(counts_of(rows, {"p": 0.1}))
        covered += c["low"] <= truth <= c["high"]
    assert covered / 300 >= 0.95


def test_decisions_no_audit_could_check_widen_the_interval():
    rows, _ = window(np.random.default_rng(2), audit_rate=0.0)
    c = corrected_accuracy(counts_of(rows, {"p": 0.0}))
    assert c["unchecked_automatic"] == 300 and c["high"] - c["low"] >= 0.3 - 1e-9  # 300 of 1000 could be either


def test_models_api_and_monitoring_show_the_corrected_accuracy(tmp_path, sqlite_url):
    from sqlalchemy import select, update

    from decider.cases.tables import Case
    from decider.config import load_settings
    from helpers import SETOSA, api, review_headers, submit, write_config

    with api(load_settings(write_config(tmp_path, sqlite_url, level="assist"))) as (client, h):
        for i in range(20):
            submit(client, h, SETOSA, key=f"k{i}")
        engine = client.app.state.runtime.engine
        with engine.begin() as conn:  # a person labels every queued case: 15 agree with the model, 5 do not
            ids = [r[0] for r in conn.execute(select(Case.id).order_by(Case.id))]
            for n, case_id in enumerate(ids):
                label = "setosa" if n < 15 else "virginica"
                conn.execute(update(Case).where(Case.id == case_id).values(review_status="done", review_label=label))
        admin = review_headers(client, "root")
        [live] = [f for f in client.get("/api/v1/models", headers=admin).json()["figures"] if f["role"] == "live"]
        monitoring = client.get("/api/v1/monitoring", headers=admin).json()["quality"]["corrected"]["iris-v1"]
    # Every case is queued and labelled: a census, so the figure is exact and its interval a point.
    assert live["corrected_accuracy"] == {"value": 0.75, "low": 0.75, "high": 0.75, "labelled": 20, "cases": 20}
    assert monitoring["value"] == 0.75 and monitoring["labelled"] == 20


def test_simulate_replays_a_looser_policy_with_the_corrected_error():
    """The replay of a looser threshold decides the cases queued before, which people labelled in full, and
    the ones decided before, of which audits saw a fifth: the plain rate counts mostly the hard queued ones."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from decider.automation.simulate import tally
    from decider.policy import Level, Policy

    rng = np.random.default_rng(5)
    rows, wrong_total = [], 0
    for i in range(2000):
        auto = i < 1500
        correct = rng.random() < (0.98 if auto else 0.7)
        wrong_total += not correct
        audited = auto and rng.random() < 0.2
        labelled = audited or not auto
        rows.append(SimpleNamespace(
            key=f"k{i}", prediction="a", confidence=0.97 if auto else 0.7, route="auto" if auto else "queue",
            created_at=datetime(2026, 12, 1, tzinfo=UTC), review_label=("a" if correct else "b") if labelled else None,
            outcome=None, novelty=[], audit=audited, review_status="done" if labelled else None, policy_version="p"))
    loose = Policy(level=Level.PARTIAL, threshold=0.6)
    _, (replayed,) = tally(rows, [loose], {"p": 0.2})
    truth = wrong_total / 2000
    corrected = replayed.corrected_error
    assert replayed.auto == 2000 and corrected["low"] <= truth <= corrected["high"]
    assert abs(corrected["error"] - truth) < 0.02
    assert replayed.error_rate is not None and replayed.error_rate > truth + 0.05  # the plain rate overstates
