"""Audits by need: how likely each automatic decision is to get a blind audit, when `automation.audit_budget`
sets how many a day people can do. Pure: no I/O (automation/auditing.py feeds it and keeps it current).

The budget is shared out between strata (predicted class x confidence band, the bands being the quartiles
of the class's automatic decisions over the last day) in proportion to each stratum's daily volume times
how loose its error bound still is (the exact upper bound minus the rate seen; 1 with no audit yet), so
audits go where they teach most. `audit_rate` stays the floor: every automatic decision keeps a chance of
an audit, so every stratum stays estimable. Probabilities are rounded down to a power of two, so the cases
fall into few sampling strata and the plan never spends more than its share; the probability used is
stored with each case, and the sampling-corrected figures (certify.py) weight by it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from decider.certify import clopper_pearson_upper

BANDS = 4


@dataclass(frozen=True)
class AuditPlan:
    floor: float  # the configured audit_rate
    edges: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # per class: interior band edges
    rates: Mapping[tuple[str, int], float] = field(default_factory=dict)  # (class, band) -> probability

    def band(self, label: str, confidence: float) -> int:
        return int(np.searchsorted(self.edges.get(label, ()), confidence, side="right"))

    def probability(self, label: str | None, confidence: float | None) -> float:
        if label is None or confidence is None:
            return self.floor
        return max(self.floor, self.rates.get((label, self.band(label, confidence)), self.floor))


def rounded_down(p: float) -> float:
    """The largest power of two (1, 1/2, 1/4, ... 1/1024) at or below `p`; 0 below 1/1024."""
    if p < 2.0 ** -10:
        return 0.0
    return min(1.0, 2.0 ** -math.ceil(-math.log2(p) - 1e-12))


def plan(decided: Iterable[tuple[str, float]], audited: Iterable[tuple[str, float, bool]], *, budget: float,
         floor: float, delta: float = 0.05) -> AuditPlan:
    """A plan from the last day's automatic decisions (class, confidence) and the labelled audits behind the
    current bounds (class, confidence, wrong), spending about `budget` audits a day."""
    by_class: dict[str, list[float]] = {}
    for label, conf in decided:
        by_class.setdefault(label, []).append(conf)
    edges = {label: tuple(float(q) for q in np.unique(np.quantile(confs, np.linspace(0, 1, BANDS + 1)[1:-1])))
             for label, confs in by_class.items()}
    draft = AuditPlan(floor, edges)
    volume: dict[tuple[str, int], int] = {}
    for label, confs in by_class.items():
        for conf in confs:
            key = (label, draft.band(label, conf))
            volume[key] = volume.get(key, 0) + 1
    tally: dict[tuple[str, int], list[int]] = {}
    for label, conf, wrong in audited:
        if label in edges:
            t = tally.setdefault((label, draft.band(label, conf)), [0, 0])
            t[0] += 1
            t[1] += wrong
    need = {}
    for key in volume:
        n, k = tally.get(key, [0, 0])
        need[key] = 1.0 if n == 0 else float(clopper_pearson_upper(np.array([k]), np.array([n]), delta)[0]) - k / n
    weight = {key: volume[key] * need[key] for key in volume}
    total = sum(weight.values())
    rates = {}
    for key, v in volume.items():
        share = budget * weight[key] / total if total else 0.0
        rates[key] = max(floor, rounded_down(min(1.0, share / v)))
    return AuditPlan(floor, edges, rates)
