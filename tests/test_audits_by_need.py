"""Audits by need (decider/audits.py, automation/auditing.py): the budget goes where the bound is loosest,
never under the floor, within the day's budget; the probability is stored with each case, and the corrected
error stays right over repeated samples."""

from __future__ import annotations

import numpy as np

from decider.audits import AuditPlan, plan
from decider.automation.auditing import Auditor
from decider.certify import counts_of, estimate
from helpers import api, settings_for, submit

SETOSA = {"sepal length (cm)": 5.0, "petal width (cm)": 0.2}
BUDGET = 10


def test_the_budget_goes_where_the_bound_is_loosest_and_the_floor_stays():
    rng = np.random.default_rng(0)
    decided = [("a", float(c)) for c in rng.uniform(0.9, 1.0, 5000)] + [("b", float(c)) for c in
                                                                          rng.uniform(0.9, 1.0, 5000)]
    # Class a has 2,000 audits behind it, all right; class b none.
    audited = [("a", float(c), False) for c in rng.uniform(0.9, 1.0, 2000)]
    p = plan(decided, audited, budget=500, floor=0.01)
    a = [p.probability("a", c) for _, c in decided[:5000]]
    b = [p.probability("b", c) for _, c in decided[5000:]]
    assert np.mean(b) > 5 * np.mean(a)  # the class with no evidence gets most of the audits
    assert min(a) >= 0.01 and min(b) >= 0.01  # every decision keeps a chance of an audit
    expected = sum(a) + sum(b)
    assert expected <= 500 + 0.01 * 10_000  # the budget (beyond the floor) is never overspent
    assert len({*a, *b}) <= 4  # rounded to powers of two (and the floor): few sampling strata
    assert AuditPlan(0.05).probability("a", 0.99) == 0.05  # no plan yet: the floor


def test_the_stored_probability_keeps_the_corrected_error_unbiased_by_repetition():
    """Strata audited at very different rates, the truth known: over 300 repetitions the 95% interval from
    the stored probabilities covers the true error in at least 95% of them (less a binomial margin)."""
    rng = np.random.default_rng(11)
    decided = [("a", float(c)) for c in rng.uniform(0.8, 1.0, 4000)]
    p = plan(decided, [("a", c, False) for _, c in decided[:1500] if c > 0.95], budget=300, floor=0.02)
    conf = np.array([c for _, c in decided])
    error_at = 0.5 * (1 - conf)  # the truth: error rises as confidence falls
    covered, truth = 0, float(error_at.mean())
    probs = np.array([p.probability("a", c) for c in conf])
    assert len(set(probs)) >= 2  # the rates differ between bands
    for _ in range(300):
        wrong = rng.random(len(conf)) < error_at
        drawn = rng.random(len(conf)) < probs
        rows = [{"prediction": "a", "confidence": c, "route": "auto", "audit": bool(d), "policy_version": "p",
                 "review_status": "done" if d else None, "review_label": ("b" if w else "a") if d else None,
                 "audit_probability": float(q)} for c, w, d, q in zip(conf, wrong, drawn, probs, strict=True)]
        est = estimate(counts_of(rows, {"p": 0.0}))
        covered += est["low"] <= truth <= est["high"]
    assert covered / 300 >= 0.93


def test_cases_store_their_audit_probability_and_the_budget_caps_the_day(tmp_path, db_url):
    # A budget of 10: the 21 decisions before the rebuild, each audited at the 5% floor, reach it by chance
    # with probability 2e-8 (a budget of 3 was reached 8% of the time, and the plan then fell to the floor).
    settings = settings_for(tmp_path, db_url, automation=f"audit_rate = 0.05\naudit_budget = {BUDGET}")
    with api(settings) as (client, headers):
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        auditor = Auditor(runtime)
        auditor.tick()
        assert runtime.audit_plan is not None
        # No automatic decision yet: the plan has no strata, so every decision gets the floor.
        first = submit(client, headers, SETOSA)
        assert first["route"] == "auto"
        for _ in range(20):
            submit(client, headers, SETOSA)
        auditor.plan_seconds = 0  # rebuild now: every decision so far is unaudited evidence
        auditor.tick()
        rate = runtime.audit_plan.probability("setosa", first["confidence"])
        assert rate > 0.05  # no audit behind this band yet: it gets the budget
        with runtime.engine.connect() as conn:
            from sqlalchemy import select

            from decider.cases.service import CASE
            stored = conn.execute(select(CASE.c.audit_probability).where(CASE.c.route == "auto")
                                  .order_by(CASE.c.id)).scalars().all()
        assert stored[0] == 0.05
        # Simulated 20,000 times, the budget was reached after 57 more cases on average, 349 at most.
        for _ in range(1000):
            submit(client, headers, SETOSA)
            auditor.tick()
            if auditor.spent_today() >= BUDGET:
                break
        assert auditor.spent_today() >= BUDGET
        auditor.tick()
        # The day's budget is spent: the floor.
        assert runtime.audit_plan.probability("setosa", first["confidence"]) == 0.05
