"""Certified thresholds: the lowest confidence threshold whose error among the cases it would let the model
decide is at most a target, with a stated confidence, from labelled evidence. Pure: no I/O.

The procedure is Learn-then-Test (Angelopoulos, Bates et al., 2021) with fixed-sequence testing. The grid is
tested from the strictest threshold down; at each, the hypothesis "the error among cases at or above this
threshold is above the target" is rejected when an exact upper confidence bound (level `delta`) on that error
is at most the target, and the first threshold not rejected ends the sequence. Because testing stops at the
first failure, the chance that any threshold passed is in truth above the target is at most `delta` (the
family-wise error of fixed-sequence testing), so taking the lowest one passed does not spend the guarantee,
however fine the grid.

`live_evidence` arranges stored cases as strata (`stratum_of` says where each stands) for the threshold
bounds; `Counts` tallies the same strata and `estimate` gives the sampling-corrected error over all of them
(the monitoring page's model accuracy). A threshold is a promise about the cases still to come, so every
stratum is a *sample* of the cases the model sees while inputs do not drift, and is bounded exactly
(Clopper-Pearson): labelled cases drawn at random from a population of known size. Blind audits are drawn at
the audit rate from the automatic decisions; queued cases are all labelled (a person decides each; one not
reviewed yet counts as an error, the worst case); the model card's held-out rows are a sample of the training
data. At a threshold, the bound is the sum of each stratum's bound times its cases at or above it, over all
those cases. Several strata split `delta` between them (Bonferroni), so the bound holds for all at once;
per-class thresholds split it again between the classes, so that every class's statement, and therefore the
overall one, holds together at the stated confidence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from scipy.stats import beta

GRID = tuple(round(t, 3) for t in np.arange(0.999, 0.499, -0.001))  # strictest first


@dataclass(frozen=True)
class Sample:
    """Labelled cases drawn uniformly at random from a population: `confidence` and `wrong` of each labelled
    case, and the confidence of every member of the population (labelled or not)."""

    confidence: np.ndarray
    wrong: np.ndarray
    population: np.ndarray  # confidence of every case the sample was drawn from
    predicted: np.ndarray | None = None  # per labelled case, for per-class thresholds
    population_predicted: np.ndarray | None = None


@dataclass
class Evidence:
    samples: list[Sample] = field(default_factory=list)

    def labelled(self) -> int:
        return sum(len(s.wrong) for s in self.samples)


def clopper_pearson_upper(errors: np.ndarray, n: np.ndarray, delta: float) -> np.ndarray:
    """The exact one-sided (1 - delta) upper bound on a binomial rate; 1 where there is no trial."""
    errors, n = np.asarray(errors, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        upper = beta.ppf(1 - delta, errors + 1, np.maximum(n - errors, 1e-12))
    return np.where((n > 0) & (errors < n), upper, 1.0)


def _at_or_above(values: np.ndarray, grid: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """For each threshold, the number (or weight) of values at or above it."""
    order = np.sort(values)
    if weights is None:
        return len(order) - np.searchsorted(order, grid, side="left")
    w = np.asarray(weights, dtype=float)[np.argsort(values)]
    tail = np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]])
    return tail[np.searchsorted(order, grid, side="left")]


@dataclass(frozen=True)
class Curve:
    """Per grid threshold: the cases at or above it, the estimated and the bounded error among them."""

    grid: np.ndarray
    cases: np.ndarray
    errors_seen: np.ndarray  # point estimate of the error rate
    upper: np.ndarray
    labelled: np.ndarray
    best_case: np.ndarray  # the bound if every labelled case were right: above the target, it cannot pass


def curve(evidence: Evidence, delta: float, grid: Sequence[float] = GRID, label: str | None = None) -> Curve:
    """The bound on the error among cases at or above each threshold; `label` restricts to one predicted class."""
    g = np.asarray(grid, dtype=float)
    cases = np.zeros(len(g))
    errors_hi = np.zeros(len(g))
    errors_best = np.zeros(len(g))
    errors_est = np.zeros(len(g))
    labelled = np.zeros(len(g))
    split = delta / max(len(evidence.samples), 1)
    for s in evidence.samples:
        keep = slice(None) if label is None or s.predicted is None else s.predicted == label
        pop_keep = slice(None) if label is None or s.population_predicted is None else s.population_predicted == label
        conf, wrong = np.asarray(s.confidence)[keep], np.asarray(s.wrong, dtype=float)[keep]
        population = _at_or_above(np.asarray(s.population)[pop_keep], g).astype(float)
        n = _at_or_above(conf, g).astype(float)
        k = _at_or_above(conf, g, wrong)
        rate_hi = clopper_pearson_upper(k, n, split)
        cases += population
        errors_hi += np.where(population > 0, rate_hi * population, 0.0)
        errors_best += np.where(population > 0, clopper_pearson_upper(0 * n, n, split) * population, 0.0)
        errors_est += np.where(n > 0, k / np.maximum(n, 1) * population, 0.0)
        labelled += n
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = np.where(cases > 0, errors_hi / cases, 1.0)
        best = np.where(cases > 0, errors_best / cases, 1.0)
        seen = np.where(cases > 0, errors_est / cases, np.nan)
    return Curve(g, cases, seen, np.minimum(upper, 1.0), labelled, best)


@dataclass(frozen=True)
class Certified:
    threshold: float | None  # None: no threshold could be certified
    bound: float | None  # the upper bound on the error at it
    error_seen: float | None
    coverage: float  # share of all scored cases at or above it
    cases: int
    labelled: int
    needed: int | None  # when uncertified: labelled cases at the strictest threshold that would certify it


@cache
def labels_to_certify(rate: float, target: float, delta: float) -> int | None:
    """The fewest labelled cases at an error rate `rate` whose exact bound is at most `target` (None: never)."""
    if rate >= target:
        return None

    def certifies(n: int) -> bool:
        return bool(clopper_pearson_upper(np.array([math.floor(rate * n)]), np.array([n]), delta)[0] <= target)

    high = 1
    while not certifies(high):  # doubling, then bisection: the bound shrinks as n grows at a fixed rate
        high *= 2
        if high > 100_000_000:
            return None
    low = high // 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if certifies(mid) else (mid, high)
    return high


def fixed_sequence(c: Curve, target: float, total: float, delta: float) -> Certified:
    """Walk from the strictest threshold down while the bound stays at or under the target.

    The strictest thresholds have few labelled cases above them, and a bound over few cases is wide
    whatever their labels, so one early error would end the walk before it reached thresholds the evidence
    does support. The walk therefore starts at the strictest threshold with enough labels to certify an
    error of half the target (`start`), and skips a threshold whose bound would exceed the target even if
    every labelled case were right. Both depend only on how many cases lie above each threshold, never on
    their labels, so the order tested is fixed before the labels are read and the guarantee stands.
    """
    start = labels_to_certify(target / 2, target, delta) or 1
    passed, stopped = None, None
    for i in range(len(c.grid)):
        if passed is None and (c.labelled[i] < start or c.best_case[i] > target):
            continue  # not testable yet: too few labels above it
        if c.best_case[i] > target or c.upper[i] > target:
            stopped = i
            break
        passed = i
    if passed is None:
        return Certified(None, None, None, 0.0, 0, int(c.labelled.max(initial=0)), needed_labels(c, target, delta,
                                                                                                 stopped, start))
    return Certified(float(c.grid[passed]), float(c.upper[passed]), float(c.errors_seen[passed]),
                     float(c.cases[passed] / total) if total else 0.0, int(c.cases[passed]),
                     int(c.labelled[passed]), None)


def needed_labels(c: Curve, target: float, delta: float, stopped: int | None, start: int) -> int | None:
    """When nothing passed: how many more labelled cases, at the error rate seen where the walk stopped (or
    over all the evidence, when it never started), would certify that threshold (None: the rate seen is at
    or above the target, and more labels alone will not do)."""
    at = stopped if stopped is not None else len(c.grid) - 1
    seen = c.errors_seen[at]
    rate = 0.0 if np.isnan(seen) else float(seen)
    n = labels_to_certify(rate, target, delta)
    more = None if n is None else max(n, start) - int(c.labelled[at])
    return more if more is not None and more > 0 else None  # enough labels already: the rate is the obstacle


@dataclass(frozen=True)
class Suggestion:
    target: float
    confidence: float
    overall: Certified
    per_class: dict[str, Certified]
    labelled: int
    curve: Curve  # the overall one: the risk-coverage chart draws it


def suggest(evidence: Evidence, *, target: float, confidence: float, labels: Sequence[str], total: float,
            grid: Sequence[float] = GRID) -> Suggestion:
    """The lowest certifiable threshold overall (at level 1 - confidence) and per predicted class (the level
    split between the classes), with the share of `total` scored cases each would automate."""
    delta = 1 - confidence
    whole = curve(evidence, delta, grid)
    overall = fixed_sequence(whole, target, total, delta)
    per_delta = delta / max(len(labels), 1)
    per_class = {label: fixed_sequence(curve(evidence, per_delta, grid, label), target, total, per_delta)
                 for label in labels}
    return Suggestion(target, confidence, overall, per_class, evidence.labelled(), whole)


# The case columns `stratum_of` reads (with `prediction`), for callers that hold rows as objects.
STRATUM_FIELDS = ("prediction", "route", "audit", "review_status", "review_label", "policy_version",
                  "audit_probability")


def stratum_of(row: Mapping[Any, Any], audit_rates: Mapping[str, float]) -> tuple[float | None, bool | None, bool]:
    """Where one scored case stands as evidence: (the chance it had of an audit when routed, None for a queued
    case (a census member); whether the model was wrong, None while no label is in; whether it is in the audit
    sample). The chance is the one stored with the case; a case stored before it was kept has the audit rate
    of the policy it was routed under. An audit still waiting for its review counts as an error until a
    person says otherwise."""
    labelled = row["review_status"] == "done" and row["review_label"] is not None
    wrong = row["review_label"] != row["prediction"] if labelled else None
    if row["route"] == "queue":
        return None, wrong, False
    drawn = bool(row["audit"])
    stored = row.get("audit_probability")
    rate = audit_rates.get(row["policy_version"], 0.0) if stored is None else stored
    return max(rate, 0.0), (True if drawn and wrong is None else wrong), drawn


def live_evidence(rows: Iterable[Mapping[str, Any]], audit_rates: Mapping[str, float]) -> tuple[Evidence, int]:
    """(evidence, automatic decisions that no audit could have checked) from case rows of one model."""
    queued_conf, queued_pred, queued_wrong = [], [], []
    auto: dict[float, dict[str, list[Any]]] = {}
    unchecked = 0
    for r in rows:
        rate, wrong, drawn = stratum_of(r, audit_rates)
        if rate is None:
            queued_conf.append(r["confidence"])
            queued_pred.append(r["prediction"])
            queued_wrong.append(wrong)
            continue
        unchecked += rate == 0
        group = auto.setdefault(rate, {"pop": [], "pop_pred": [], "conf": [], "pred": [], "wrong": []})
        group["pop"].append(r["confidence"])
        group["pop_pred"].append(r["prediction"])
        if drawn:
            group["conf"].append(r["confidence"])
            group["pred"].append(r["prediction"])
            group["wrong"].append(wrong)
    evidence = Evidence()
    if queued_conf:  # all labelled, one not reviewed yet as an error
        conf, pred = np.array(queued_conf, dtype=float), np.array(queued_pred)
        evidence.samples.append(Sample(conf, np.array([w is None or w for w in queued_wrong], dtype=bool), conf,
                                       pred, pred))
    for group in auto.values():
        evidence.samples.append(Sample(np.array(group["conf"], dtype=float), np.array(group["wrong"], dtype=bool),
                                       np.array(group["pop"], dtype=float), np.array(group["pred"]),
                                       np.array(group["pop_pred"])))
    return evidence, unchecked


@dataclass
class Counts:
    """What `estimate` needs, gathered one case at a time without keeping the cases: the census's cases,
    errors and unreviewed ones, and per audit rate the automatic decisions, those drawn and the errors
    among them. `decider simulate` streams every stored case through one of these per policy."""

    audit_rates: Mapping[str, float]
    census: list[int] = field(default_factory=lambda: [0, 0, 0])  # cases, wrong, not reviewed yet
    samples: dict[float, list[int]] = field(default_factory=dict)  # rate -> [population, drawn, wrong]

    def add(self, row: Mapping[Any, Any]) -> None:
        rate, wrong, drawn = stratum_of(row, self.audit_rates)
        if rate is None:
            self.census[0] += 1
            self.census[1] += bool(wrong)
            self.census[2] += wrong is None
            return
        stratum = self.samples.setdefault(rate, [0, 0, 0])
        stratum[0] += 1
        stratum[1] += drawn
        stratum[2] += drawn and bool(wrong)

    @property
    def unchecked(self) -> int:
        return self.samples.get(0.0, [0])[0]


def estimate(counts: Counts, confidence: float = 0.95) -> dict[str, Any]:
    """The error rate over every case the evidence covers, corrected for how labels were sampled, with a
    two-sided interval: census strata count their errors (unreviewed cases left out of the estimate, and
    taken as right for the lower end, wrong for the upper), sample strata scale their labelled error rate up
    to their population. A figure of the model's error over all its cases, not over the ones that happened
    to be labelled."""
    delta = (1 - confidence) / 2  # each end
    split = delta / max(len(counts.samples), 1)
    total, wrong, unknown = counts.census
    cases, seen_errors, seen_cases = float(total), float(wrong), float(total - unknown)
    low, high, labelled = float(wrong), float(wrong + unknown), total - unknown
    for size, n, k in counts.samples.values():
        cases += size
        labelled += n
        if n:
            seen_errors += size * k / n
            seen_cases += size
            low += size * float(beta.ppf(split, k, n - k + 1)) if k > 0 else 0.0
        high += size * float(clopper_pearson_upper(np.array([k]), np.array([n]), split)[0])
    return {"error": seen_errors / seen_cases if seen_cases else None,
            "low": low / cases if cases else None, "high": high / cases if cases else None,
            "labelled": labelled, "cases": int(cases), "unchecked_automatic": counts.unchecked}


def counts_of(rows: Iterable[Mapping[str, Any]], audit_rates: Mapping[str, float]) -> Counts:
    counts = Counts(audit_rates)
    for r in rows:
        if r.get("prediction") is not None and r.get("confidence") is not None:
            counts.add(r)
    return counts


def corrected_accuracy(counts: Counts) -> dict[str, Any]:
    """The model's accuracy over every case counted, corrected for how labels were drawn (`estimate`,
    turned round), with a 95% interval, the labels behind it and the unaudited automatic decisions."""
    est = estimate(counts)

    def flip(x: float | None) -> float | None:
        return None if x is None else 1 - x

    return {"value": flip(est["error"]), "low": flip(est["high"]), "high": flip(est["low"]),
            "labelled": est["labelled"], "cases": est["cases"], "unchecked_automatic": est["unchecked_automatic"]}
