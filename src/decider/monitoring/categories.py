"""Drift of category inputs: the live share of each category against its training share. Pure: no I/O.

The card carries each category field's training counts (`feature_stats[name]["counts"]`); a live value the
training data never held counts in one more bin, "unseen", whatever its value (the names of the most
frequent ones are kept to show). The test is the chi-square test of homogeneity on the 2 x k table of counts
(training row, live row), without continuity correction: two-sample, as KS is for numeric fields, so a small
training set's own sampling noise is allowed for. Its p-value allows for the number of categories, so it flags
at the stated rate (`category_pvalue`) when nothing changed, whatever the field's k and the live n; PSI over
categories does not: its noise is about (k - 1) / n, so a field of 20 categories drawn from its own training
frequencies passes PSI 0.1 at n = 200. PSI is shown as the size of a shift, not judged.

The approximation needs expected counts of at least MIN_EXPECTED: the rarest columns are pooled into one
until every column's expected counts reach it (with no column left to compare, there is no test). A large
share of unseen values is flagged on its own (`category_unseen`), like the numeric out-of-range share: the
model never learned what to make of them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from scipy import stats as sps

from decider.monitoring.drift import Thresholds, is_category, psi, verdict

UNSEEN = "(unseen)"
NAMED_UNSEEN = 20  # unseen values kept by name (the most frequent); the rest are counted, not named
MIN_EXPECTED = 5.0


def category_of(value: object) -> str:
    """A stored value as the card names categories: strings as they are, anything else as JSON (a boolean
    field's true and false as "true" and "false", as registry/training.py counts them)."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class CategoryTally:
    """One category field's live values as counts: per training category, per unseen value (the most frequent
    NAMED_UNSEEN by name, the rest in `unseen_other`)."""

    n: int = 0
    seen: Counter[str] = field(default_factory=Counter)
    unseen: Counter[str] = field(default_factory=Counter)
    unseen_other: int = 0

    @property
    def size(self) -> int:
        return len(self.seen) + len(self.unseen) + 4

    @property
    def unseen_n(self) -> int:
        return sum(self.unseen.values()) + self.unseen_other

    def cap(self) -> CategoryTally:
        if len(self.unseen) > NAMED_UNSEEN:
            kept = Counter(dict(self.unseen.most_common(NAMED_UNSEEN)))
            self.unseen_other += sum(self.unseen.values()) - sum(kept.values())
            self.unseen = kept
        return self

    @staticmethod
    def total(parts: Sequence[CategoryTally]) -> CategoryTally:
        out = CategoryTally()
        for t in parts:
            out.n += t.n
            out.seen.update(t.seen)
            out.unseen.update(t.unseen)
            out.unseen_other += t.unseen_other
        return out.cap()


@dataclass(frozen=True, eq=False)
class CategoryBins:
    """Where one category field's live values are counted, from its card statistics."""

    stats: Mapping[str, Any]

    @cached_property
    def train(self) -> dict[str, int]:
        """Training count per category, in card order."""
        return {str(c): int(n) for c, n in self.stats["counts"].items()}

    def tally(self, values: Iterable[object]) -> CategoryTally:
        counts = Counter(category_of(v) for v in values if v is not None)
        t = CategoryTally(n=sum(counts.values()))
        for name, n in counts.items():
            (t.seen if name in self.train else t.unseen)[name] = n
        return t.cap()


def card_categories(card: Mapping[str, Any]) -> dict[str, CategoryBins]:
    """The bins of every category feature the card's model takes, in card order."""
    return {name: CategoryBins(stats) for name, stats in card.get("feature_stats", {}).items()
            if name in card.get("features", [name]) and is_category(stats)}


def chi_square(train: np.ndarray, live: np.ndarray) -> tuple[float, float, int] | None:
    """(statistic, p-value, degrees of freedom) of the homogeneity test of two rows of counts, the rarest
    columns pooled until every expected count is at least MIN_EXPECTED; None when fewer than two columns
    remain (or a row is empty)."""
    table = np.vstack([train, live]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if rows.min() <= 0 or table.shape[1] < 2:
        return None
    need = MIN_EXPECTED * table.sum() / rows.min()  # a column's total below this has an expected count < 5
    columns = sorted(table.T.tolist(), key=sum)
    while len(columns) > 1 and sum(columns[0]) < need:
        first = columns.pop(0)
        columns[0] = [a + b for a, b in zip(first, columns[0], strict=True)]
        columns.sort(key=sum)
    if len(columns) < 2:
        return None
    statistic, p, dof, _ = sps.chi2_contingency(np.array(columns).T, correction=False)
    return float(statistic), float(p), int(dof)


def category_drift(name: str, bins: CategoryBins, t: CategoryTally, thresholds: Thresholds) -> dict[str, Any]:
    """The live shares of one category field against training, the chi-square test and the unseen share,
    with flags."""
    train = bins.train
    train_n = sum(train.values())
    unseen_n = t.unseen_n
    train_counts = np.array([*train.values(), 0], dtype=float)
    live_counts = np.array([*(t.seen.get(c, 0) for c in train), unseen_n], dtype=float)
    expected = train_counts / train_n if train_n else np.zeros(len(train_counts))
    actual = live_counts / t.n if t.n else np.zeros(len(live_counts))
    test = chi_square(train_counts, live_counts) if t.n else None
    enough = t.n >= thresholds.min_n
    out: dict[str, Any] = {
        "name": name, "n": int(t.n), "train_n": int(train_n),
        "categories": [{"category": c, "train_count": int(train[c]), "train_share": float(expected[i]),
                        "live_count": int(live_counts[i]), "live_share": float(actual[i])}
                       for i, c in enumerate(train)],
        "unseen": {"count": int(unseen_n), "share": float(actual[-1]) if t.n else None,
                   "named": [{"category": c, "count": int(n)} for c, n in t.unseen.most_common()],
                   "unnamed": int(t.unseen_other)},
        "bins": {"labels": [*train, UNSEEN], "expected": expected.tolist(), "actual": actual.tolist()},
        "psi": psi(actual, expected) if t.n else None,
        "chi2": test[0] if test else None, "chi2_pvalue": test[1] if test else None,
        "chi2_dof": test[2] if test else None,
    }
    out["chi2_flag"] = bool(enough and test is not None and test[1] < thresholds.category_pvalue)
    out["unseen_flag"] = bool(enough and t.n and actual[-1] > thresholds.category_unseen)
    out["flag"] = out["chi2_flag"] or out["unseen_flag"]
    out["too_few"] = not enough
    out["status"], out["judged_from"] = verdict(out["flag"], False, thresholds.min_n if not enough else None)
    return out
