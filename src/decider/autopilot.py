"""Autopilot: per predicted class, the model earns the right to decide alone from certified evidence and loses
it by itself when blind audits show its error above the target. Pure: no I/O (automation/pilot.py stores the
state and feeds it the evidence).

A class starts an *episode* in assist (threshold 1: every case of it goes to a person, and each review is a
label). It is tested each time the labels behind it double: the j-th look comes at `first_look * 2**j`
labels and tests at level `delta_class / 2**(j + 1)`, where `delta_class` is the class's share of
1 - confidence (Bonferroni across classes). The looks of one episode together spend at most `delta_class`,
so the chance that any move of the episode put the class at a threshold whose error is above the target is
at most that, however long the episode runs. A look that certifies a threshold below the class's current one
moves it there (certify.py's Learn-then-Test walk), never below the ceiling: the config's threshold for the
class.

While a class decides alone, its most recent `window` audited automatic decisions are watched. When the exact
lower confidence bound on their error rate is above the target (`fallback_errors` of them are wrong), the
class falls back to assist at once and a new episode starts at that moment: the labels before it describe
inputs that have since moved on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache, cached_property
from typing import Any, Literal

from scipy.stats import beta

from decider.certify import Evidence, curve, fixed_sequence, labels_to_certify

ASSIST = 1.0  # a class threshold of 1: the model never decides the class alone (policy.route)
MoveKind = Literal["earn", "widen", "fallback", "look"]


@dataclass(frozen=True)
class Rules:
    target: float  # the largest error rate allowed among a class's automatic decisions
    confidence: float  # how sure each raise must be, over all classes together
    window: int  # audited decisions watched per class for a fallback
    classes: tuple[str, ...]
    ceiling: Mapping[str, float]  # the loosest threshold the config allows per class

    @property
    def delta_class(self) -> float:
        return (1 - self.confidence) / max(len(self.classes), 1)

    def look_level(self, j: int) -> float:
        return self.delta_class / 2 ** (j + 1)

    @cached_property
    def first_look(self) -> int:
        """Labels before the first look: twice what the walk needs above a threshold to start
        (certify.fixed_sequence), so the first and largest share of the level is not spent on a look that
        could only test the loosest threshold."""
        return 2 * (labels_to_certify(self.target / 2, self.target, self.look_level(0)) or 1)

    def look_due(self, labelled: int) -> int | None:
        """The latest look `labelled` labels have reached (None: not the first yet). Looks skipped because
        labels came fast are never taken, which leaves their share of the level unspent."""
        if labelled < self.first_look:
            return None
        return int(math.floor(math.log2(labelled / self.first_look) + 1e-12))

    def fallback_errors(self, n: int) -> int | None:
        """Errors among `n` audited decisions that put the lower bound on the error rate above the target."""
        return fallback_errors(n, self.target, 1 - self.confidence)


@cache
def fallback_errors(n: int, target: float, delta: float) -> int | None:
    for k in range(1, n + 1):
        if float(beta.ppf(delta, k, n - k + 1)) > target * (1 + 1e-9):  # not a rounding error past it
            return k
    return None


@dataclass(frozen=True)
class State:
    threshold: float = ASSIST
    since: datetime | None = None  # labels from this moment on count in this episode (None: all)
    looks: int = 0  # the next look this episode may take
    deciding_since: datetime | None = None  # when the class first decided alone in this episode

    @property
    def deciding(self) -> bool:
        return self.threshold < ASSIST


@dataclass(frozen=True)
class Move:
    label: str
    kind: MoveKind  # "look": a test was spent and the threshold stayed
    old: State
    new: State
    evidence: dict[str, Any]

    @property
    def changes_policy(self) -> bool:
        return self.old.threshold != self.new.threshold


def step(label: str, state: State, rules: Rules, *, evidence: Evidence, labelled: int, scored: int,
         audits: Sequence[bool], now: datetime) -> Move | None:
    """One evaluation of one class. `evidence` holds the live labels since `state.since` (certify.py's strata),
    `labelled` how many of them are of this class, `scored` every case scored since then (for the share
    automated), `audits` whether each audited automatic decision of this class since it began deciding alone
    was wrong, oldest first."""
    if state.deciding:
        recent = list(audits)[-rules.window:]
        errors, n = sum(recent), len(recent)
        needed = rules.fallback_errors(n)
        if needed is not None and errors >= needed:
            lower = float(beta.ppf(1 - rules.confidence, errors, n - errors + 1))
            return Move(label, "fallback", state, State(ASSIST, since=now), {
                "audited": n, "wrong": errors, "error_seen": errors / n, "error_lower_bound": lower,
                "target": rules.target, "confidence": rules.confidence, "window": rules.window})
    j = rules.look_due(labelled)
    if j is None or j < state.looks:
        return None
    level = rules.look_level(j)
    result = fixed_sequence(curve(evidence, level, label=label), rules.target, scored, level)
    facts: dict[str, Any] = {"look": j, "level": level, "labelled": labelled, "target": rules.target,
                             "certified": result.threshold, "error_bound": result.bound,
                             "error_seen": result.error_seen, "automates": result.coverage,
                             "ceiling": rules.ceiling.get(label, ASSIST)}
    spent = replace(state, looks=j + 1)
    if result.threshold is not None:
        threshold = max(result.threshold, rules.ceiling.get(label, ASSIST))
        if threshold < state.threshold:
            kind: MoveKind = "widen" if state.deciding else "earn"
            moved = replace(spent, threshold=threshold, deciding_since=state.deciding_since or now)
            return Move(label, kind, state, moved, facts | {"threshold": threshold})
    return Move(label, "look", state, spent, facts)
