"""The pure core: route() at each level, per-class thresholds, and the scoring helpers."""

from __future__ import annotations

import pytest

from decider.policy import Level, Policy, route, routes, stable_fraction
from decider.scoring import score_from


def test_human_only_shadow_and_assist_queue_everything():
    for level, shown in ((Level.HUMAN_ONLY, False), (Level.SHADOW, False), (Level.ASSIST, True)):
        r = route(Policy(level=level), case_key="k", prediction="setosa", confidence=1.0)
        assert (r.route, r.show_suggestion, r.audit) == ("queue", shown, False)


def test_partial_compares_confidence_with_threshold_inclusive():
    policy = Policy(level=Level.PARTIAL, threshold=0.9)
    assert route(policy, case_key="k", prediction="setosa", confidence=0.9).route == "auto"
    below = route(policy, case_key="k", prediction="setosa", confidence=0.8999)
    assert (below.route, below.show_suggestion, below.threshold) == ("queue", True, 0.9)


def test_per_class_thresholds_fall_back_to_default():
    policy = Policy(level=Level.PARTIAL, threshold=0.9, class_thresholds={"virginica": 0.99})
    assert policy.threshold_for("virginica") == 0.99
    assert policy.threshold_for("setosa") == 0.9
    assert route(policy, case_key="k", prediction="virginica", confidence=0.95).route == "queue"
    assert route(policy, case_key="k", prediction="setosa", confidence=0.95).route == "auto"


def test_full_decides_everything_and_partial_without_a_score_queues():
    assert route(Policy(level=Level.FULL), case_key="k", prediction="a", confidence=0.34).route == "auto"
    assert route(Policy(level=Level.PARTIAL), case_key="k", prediction=None, confidence=None).route == "queue"


def test_audit_only_on_automatic_decisions():
    policy = Policy(level=Level.FULL, audit_rate=0.5)
    assert route(policy, case_key="k", prediction="a", confidence=1.0, audit_draw=0.49).audit
    assert not route(policy, case_key="k", prediction="a", confidence=1.0, audit_draw=0.5).audit
    assisted = Policy(level=Level.ASSIST, audit_rate=1.0)
    assert not route(assisted, case_key="k", prediction="a", confidence=1.0, audit_draw=0.0).audit


def test_policy_version_depends_on_content_only():
    a = Policy(level=Level.PARTIAL, class_thresholds={"x": 0.5, "y": 0.6})
    b = Policy(level=Level.PARTIAL, class_thresholds={"y": 0.6, "x": 0.5})
    assert a.version == b.version and len(a.version) == 12
    assert Policy(level=Level.FULL).version != a.version


def test_stable_fraction_is_deterministic_and_spread():
    assert stable_fraction("case-1", "s") == stable_fraction("case-1", "s")
    values = [stable_fraction(f"case-{i}", "s") for i in range(4000)]
    assert all(0 <= v < 1 for v in values)
    assert sum(v < 0.25 for v in values) / len(values) == pytest.approx(0.25, abs=0.03)


def test_score_takes_top_class_and_first_on_ties():
    s = score_from(["a", "b", "c"], [0.2, 0.5, 0.3])
    assert (s.prediction, s.confidence) == ("b", 0.5)
    assert score_from(["a", "b"], [0.5, 0.5]).prediction == "a"


def test_routes_of_a_batch_are_the_routes_of_its_cases_one_by_one():
    # One loop routes a whole batch (cases/service.score_batch): nothing may carry over from one case to the next.
    import random

    rnd = random.Random(5)
    policies = [Policy(level=level, threshold=t, class_thresholds=c, audit_rate=a, rollout_percent=r, novelty=n)
                for level in Level for t in (0.5, 0.9, 1.0) for c in ({}, {"b": 0.6, "c": 1.0})
                for a in (0.0, 0.3) for r in (100.0, 40.0) for n in ("queue", "allow")]
    for policy in policies:
        cases = [(f"k{rnd.random()}", rnd.choice(["a", "b", "c", None]), rnd.choice([None, 0.55, 0.9, 0.95, 1.0]),
                  rnd.random(), rnd.random() < 0.3, rnd.choice([None, 0.0, 0.25, 1.0])) for _ in range(40)]
        keys, predictions, confidences, draws, novel, probabilities = map(list, zip(*cases, strict=True))
        one_by_one = [route(policy, case_key=k, prediction=p, confidence=c, audit_draw=d, novel=n, audit_probability=q)
                      for k, p, c, d, n, q in cases]
        assert routes(policy, keys, predictions, confidences, draws, novel, probabilities) == one_by_one
        assert {r.route for r in one_by_one} <= {"auto", "queue"}
