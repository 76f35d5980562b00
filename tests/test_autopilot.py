"""Autopilot's rules (decider/autopilot.py): when a class earns automation, when it loses it, and that the
looks of an episode keep the stated confidence, checked by repetition on data whose truth is known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from decider.autopilot import ASSIST, Rules, State, fallback_errors, step
from decider.certify import Evidence, Sample

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rules(target: float = 0.05, confidence: float = 0.9, ceiling: float = 0.5, classes: tuple[str, ...] = ("a",),
          window: int = 100) -> Rules:
    return Rules(target, confidence, window, classes, dict.fromkeys(classes, ceiling))


def census(conf: np.ndarray, wrong: np.ndarray, label: str = "a") -> Evidence:
    """Every case queued and reviewed: what a class at assist gathers (certify.live_evidence's queued stratum)."""
    pred = np.full(len(conf), label)
    return Evidence(samples=[Sample(conf, np.asarray(wrong, dtype=bool), conf, pred, pred)])


def test_the_looks_of_an_episode_spend_at_most_the_class_share_of_the_level():
    r = rules(confidence=0.95, classes=("a", "b", "c"))
    assert r.delta_class == pytest.approx(0.05 / 3)
    assert sum(r.look_level(j) for j in range(60)) <= r.delta_class
    first = r.first_look
    assert r.look_due(first - 1) is None
    assert [r.look_due(first * m) for m in (1, 2, 3, 4, 8)] == [0, 1, 1, 2, 3]


def test_a_class_earns_the_certified_threshold_but_never_below_the_ceiling():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 4000)
    wrong = rng.random(4000) < (1 - conf) / 4  # accurate well above the target from ~0.7 up
    for ceiling in (0.5, 0.97):
        r = rules(ceiling=ceiling)
        move = step("a", State(), r, evidence=census(conf, wrong), labelled=4000, scored=4000, audits=[], now=T0)
        assert move is not None and move.kind == "earn"
        assert move.new.threshold == max(move.evidence["certified"], ceiling) < ASSIST
        assert move.new.deciding_since == T0 and move.new.looks == r.look_due(4000) + 1
    # Too few labels for the first look: nothing happens, nothing is spent.
    few = step("a", State(), rules(), evidence=census(conf[:50], wrong[:50]), labelled=50, scored=50, audits=[], now=T0)
    assert few is None


def test_a_look_that_certifies_nothing_is_spent_and_waits_for_the_labels_to_double():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 2000)
    wrong = rng.random(2000) < 0.3  # far above the target at every confidence
    r = rules()
    move = step("a", State(), r, evidence=census(conf, wrong), labelled=2000, scored=2000, audits=[], now=T0)
    assert move is not None and move.kind == "look" and move.new.threshold == ASSIST
    again = step("a", move.new, r, evidence=census(conf, wrong), labelled=2000, scored=2000, audits=[], now=T0)
    assert again is None  # the same labels are never tested twice


def test_a_deciding_class_falls_back_at_the_stated_number_of_wrong_audits():
    r = rules(target=0.05, confidence=0.95, window=20)
    state = State(threshold=0.8, since=T0, looks=3, deciding_since=T0)
    k = fallback_errors(20, 0.05, 0.05)
    assert k == 4  # the README's example: 4 wrong of the last 20 audited decisions at 5% / 95%
    later = T0 + timedelta(hours=1)
    calm = [False] * 16 + [True] * (k - 1)
    assert step("a", state, r, evidence=Evidence(), labelled=0, scored=0, audits=calm, now=later) is None
    move = step("a", state, r, evidence=Evidence(), labelled=0, scored=0, audits=[*calm, True], now=later)
    assert move is not None and move.kind == "fallback"
    assert move.new == State(ASSIST, since=later)  # a new episode: looks and labels start again
    assert move.evidence["wrong"] == k and move.evidence["error_lower_bound"] > 0.05
    # Only the last `window` audits count: old errors age out.
    aged = [True] * 10 + [False] * 20
    assert step("a", state, r, evidence=Evidence(), labelled=0, scored=0, audits=aged, now=later) is None


def test_every_move_of_an_episode_holds_the_target_at_the_stated_confidence_by_repetition():
    """A class at assist gathers labels (every case reviewed); its looks come as the labels double. Truth: the
    model is overconfident, error (1 - c) * 0.8 at confidence c, so the error among cases at or above t is
    0.4 * (1 - t): the target 5% holds from t = 0.875 up. Over 300 episodes, the share where any move put the
    class below 0.875 must stay within the 10% the confidence allows. (Counting queued cases as a census of
    past cases, as this code once did, breached in 25% of episodes.)"""
    target, confidence, reps = 0.05, 0.9, 300
    r = rules(target=target, confidence=confidence)
    rng = np.random.default_rng(7)
    n_max = r.first_look * 64
    breached = earned = 0
    for _ in range(reps):
        conf = rng.uniform(0.5, 1.0, n_max)
        wrong = rng.random(n_max) < 0.8 * (1 - conf)
        state, lowest = State(), ASSIST
        for n in (r.first_look * 2 ** j for j in range(7)):
            move = step("a", state, r, evidence=census(conf[:n], wrong[:n]), labelled=n, scored=n, audits=[],
                        now=T0)
            if move is not None:
                state = move.new
                lowest = min(lowest, state.threshold)
        true_error = 0.4 * (1 - lowest)
        breached += lowest < ASSIST and true_error > target
        earned += lowest < ASSIST
    assert breached / reps <= 1 - confidence
    assert earned / reps >= 0.9  # and with this much evidence the class does earn automation
