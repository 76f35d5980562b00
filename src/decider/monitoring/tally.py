"""What the monitoring figures need from a set of cases, as counts that add up across sets. Pure: no I/O.

A `Tally` of the cases of one hour is what monitoring/cache.py keeps, so a window's figures are the sum of
its hours' tallies, never a re-read of its cases. Two kinds of count:

- from what is fixed when a case is stored (its inputs, the model's answer, the route, novelty): added once;
- from what changes later (a review, an outcome): each case's `Judgement`, the few facts the quality figures
  read from it. When a case changes, the cache takes its old judgement out and puts the new one in.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

import numpy as np

from decider.certify import STRATUM_FIELDS, Counts, counts_of
from decider.monitoring.buckets import hour_index
from decider.monitoring.categories import CategoryBins, CategoryTally
from decider.monitoring.drift import FeatureBins, FeatureTally, feature_values, is_category

CONFIDENCE_BINS = 20
CONFIDENCE_EDGES = np.linspace(0.0, 1.0, CONFIDENCE_BINS + 1)
ROUTES = ("auto", "queue")
NOVELTY_KINDS = ("range", "combination", "unscorable")

NO_REVIEW = -1  # in a column of review hours: not reviewed

Row = Mapping[str, Any]
Columns = Mapping[str, np.ndarray | Sequence[Any]]
Bins = FeatureBins | CategoryBins


@dataclass(frozen=True)
class Quality:
    """One accuracy-like figure: how often `left` equals `right` among the rows where `applies`."""

    key: str
    title: str
    left: str
    right: str
    applies: Callable[[Row], bool]
    meaning: str

    def verdict(self, r: Row) -> bool | None:
        """Whether the row counts as correct; None when it does not count (a side missing, or not applicable)."""
        if r.get(self.left) is None or r.get(self.right) is None or not self.applies(r):
            return None
        return bool(r[self.left] == r[self.right])


def _auto(r: Row) -> bool:
    return r["route"] == "auto"


QUALITY: tuple[Quality, ...] = (
    Quality("model_accuracy", "Prediction = outcome, on cases with an outcome", "prediction", "outcome",
            lambda r: True,
            "The model's prediction equals the outcome reported later, over the scored cases that have one. Which "
            "cases get an outcome is the client's choice, so this is not the model's accuracy: see the "
            "sampling-corrected figure above."),
    Quality("auto_accuracy", "Automatic decisions (outcomes)", "decision", "outcome", _auto,
            "Decisions the model made on its own that equal the outcome reported later."),
    Quality("audit_agreement", "Automatic decisions upheld by audits", "decision", "review_label",
            lambda r: _auto(r) and bool(r["audit"]),
            "Automatic decisions a blind audit agreed with; the rest were overturned."),
    Quality("human_model_agreement", "Human–model agreement (reviews)", "prediction", "review_label",
            lambda r: True,
            "A reviewer's label equals the model's prediction, over every reviewed case the model scored "
            "(queued cases are the hard ones, so this runs below the model's accuracy)."),
    Quality("human_accuracy", "Reviewer accuracy (outcomes)", "review_label", "outcome", lambda r: True,
            "A reviewer's label equals the outcome reported later."),
    Quality("decision_accuracy", "Final decisions (outcomes)", "decision", "outcome", lambda r: True,
            "The final decision, by the model or a person, equals the outcome reported later."),
)
# Everything a judgement reads from a case (QUALITY's sides and `applies`, certify.stratum_of's fields), so
# that cases alike in these are judged alike (the cache judges each combination once).
JUDGED_FIELDS = tuple(dict.fromkeys(("model_version", *STRATUM_FIELDS, *(f for q in QUALITY for f in (q.left, q.right)),
                                     "route", "audit")))

# (model version, QUALITY verdicts in order, the case as certify.Counts census and samples, review pending)
Judgement = tuple[str | None, tuple[bool | None, ...], tuple[tuple[int, ...], tuple[tuple[float, tuple[int, ...]], ...]]
                  | None, bool]


def judge(r: Row, audit_rates: Mapping[str, float]) -> Judgement:
    """The facts about one case that the quality figures count, as a hashable value."""
    one = counts_of([r], audit_rates)
    counted = (tuple(one.census), tuple(sorted((rate, tuple(v)) for rate, v in one.samples.items()))) \
        if one.census[0] or one.samples else None
    return (r["model_version"], tuple(q.verdict(r) for q in QUALITY), counted, r["review_status"] == "pending")


_JUDGED = itemgetter(*JUDGED_FIELDS)


def judged_key(r: Row) -> tuple[Any, ...]:
    try:
        return (*_JUDGED(r), r["confidence"] is None)
    except KeyError:  # a row without some column (built by hand): as if it were null
        return (*(r.get(f) for f in JUDGED_FIELDS), r.get("confidence") is None)


class Judge:
    """`judge`, remembered per combination of JUDGED_FIELDS: a million cases hold only a few hundred."""

    def __init__(self, audit_rates: Mapping[str, float]) -> None:
        self.audit_rates = dict(audit_rates)
        self.seen: dict[tuple[Any, ...], Judgement] = {}

    def __call__(self, r: Row) -> Judgement:
        return self.of_key(judged_key(r))

    def of_key(self, key: tuple[Any, ...]) -> Judgement:
        """The judgement of any case whose `judged_key` is `key` (a stand-in confidence: only its absence counts)."""
        got = self.seen.get(key)
        if got is None:
            row = dict(zip(JUDGED_FIELDS, key, strict=False)) | {"confidence": None if key[-1] else 0.0}
            got = self.seen[key] = judge(row, self.audit_rates)
        return got


def counts_from(judged: Iterable[tuple[Judgement, int]], audit_rates: Mapping[str, float]) -> Counts:
    """certify.Counts of the cases behind these judgements (each with how many cases had it)."""
    total = Counts(audit_rates)
    for (_, _, counted, _), n in judged:
        if counted is None:
            continue
        census, samples = counted
        total.census = [a + b * n for a, b in zip(total.census, census, strict=True)]
        for rate, values in samples:
            stratum = total.samples.setdefault(rate, [0, 0, 0])
            total.samples[rate] = [a + b * n for a, b in zip(stratum, values, strict=True)]
    return total


@dataclass
class Novelty:
    """Cases checked against the training data, the novel ones by kind and route, the features out of range."""

    checked: int = 0
    novel: int = 0
    auto: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    features: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # the newest message per feature out of range

    def add(self, r: Row) -> None:
        reasons = r.get("novelty")
        if reasons is not None:
            self.checked += 1
            if reasons:
                self.add_novel(reasons, r["route"] == "auto")

    def add_novel(self, reasons: Sequence[Mapping[str, Any]], auto: bool) -> None:
        """Count one checked case found novel for these reasons (`checked` is counted by the caller)."""
        self.novel += 1
        self.auto += auto
        self.kinds.update({str(x.get("kind")) for x in reasons})
        out_of_range = {x["feature"]: x.get("message") for x in reasons
                        if x.get("kind") == "range" and x.get("feature")}
        self.features.update(out_of_range.keys())
        self.examples.update(out_of_range)  # rows come oldest first: the newest message stays

    def merge(self, other: Novelty) -> None:
        """Add `other`, the newer of the two."""
        self.checked += other.checked
        self.novel += other.novel
        self.auto += other.auto
        self.kinds.update(other.kinds)
        self.features.update(other.features)
        self.examples.update(other.examples)


@dataclass
class Tally:
    """The sums behind every figure, for one set of cases (an hour of them, a window)."""

    cases: int = 0
    auto: int = 0
    audits: int = 0
    first: datetime | None = None
    last: datetime | None = None
    predicted: Counter[str] = field(default_factory=Counter)
    confidence: np.ndarray = field(default_factory=lambda: np.zeros((len(ROUTES), CONFIDENCE_BINS), dtype=int))
    confidence_sum: float = 0.0
    confidence_n: int = 0
    novelty: Novelty = field(default_factory=Novelty)
    features: dict[str, FeatureTally | CategoryTally] = field(default_factory=dict)
    judged: Counter[Judgement] = field(default_factory=Counter)
    reviewed: Counter[int] = field(default_factory=Counter)  # reviews done, by hour (buckets.hour_index)

    def add_fixed(self, rows: Sequence[Row], bins: Mapping[str, Bins], columns: Columns | None = None) -> None:
        """Count what is fixed when each case is stored; `rows` oldest first, their feature values in their
        `features` mappings or, as read by monitoring/queries.py, in `columns` (read_columns)."""
        if not rows:
            return
        self.cases += len(rows)
        self.first = min(self.first or rows[0]["created_at"], rows[0]["created_at"])
        self.last = max(self.last or rows[-1]["created_at"], rows[-1]["created_at"])
        for r in rows:
            auto = r["route"] == "auto"
            self.auto += auto
            self.audits += auto and bool(r["audit"])
            if r["prediction"] is not None:
                self.predicted[r["prediction"]] += 1
            self.novelty.add(r)
        for i, route in enumerate(ROUTES):
            scores = [r["confidence"] for r in rows if r["confidence"] is not None and r["route"] == route]
            self.confidence[i] += np.histogram(scores, bins=CONFIDENCE_EDGES)[0]
        confidences = [r["confidence"] for r in rows if r["confidence"] is not None]
        self.confidence_sum += float(np.sum(confidences)) if confidences else 0.0
        self.confidence_n += len(confidences)
        self.add_features(bins, columns if columns is not None else
                          {name: feature_values(rows, name) for name in bins})

    def add_features(self, bins: Mapping[str, Bins], columns: Columns) -> None:
        """Count the feature values in `columns`: per numeric feature floats (NaN where missing), per category
        feature the values as stored (None where missing)."""
        for name, b in bins.items():
            column = columns[name]
            if isinstance(b, CategoryBins):
                fresh: FeatureTally | CategoryTally = b.tally(column)
            else:
                values = np.asarray(column, dtype=float)
                fresh = b.tally(values[~np.isnan(values)])
            self.features[name] = total_feature([self.features[name], fresh]) if name in self.features else fresh

    def add_judged(self, judgement: Judgement, reviewed: int | None, n: int = 1) -> None:
        """Count (n = 1) or take back (n = -1) one case's judgement and the hour its review was done."""
        self.judged[judgement] += n
        if not self.judged[judgement]:
            del self.judged[judgement]
        if reviewed is not None:
            self.reviewed[reviewed] += n
            if not self.reviewed[reviewed]:
                del self.reviewed[reviewed]

    @staticmethod
    def total(parts: Sequence[Tally]) -> Tally:
        """The sum of several tallies, oldest first."""
        out = Tally()
        for t in parts:
            out.cases += t.cases
            out.auto += t.auto
            out.audits += t.audits
            if t.first is not None:
                out.first = t.first if out.first is None else min(out.first, t.first)
                out.last = t.last if out.last is None else max(out.last, t.last)  # type: ignore[type-var]
            out.predicted.update(t.predicted)
            out.confidence += t.confidence
            out.confidence_sum += t.confidence_sum
            out.confidence_n += t.confidence_n
            out.novelty.merge(t.novelty)
            out.judged.update(t.judged)
            out.reviewed.update(t.reviewed)
        names = dict.fromkeys(name for t in parts for name in t.features)
        out.features = {name: total_feature([t.features[name] for t in parts if name in t.features])
                        for name in names}
        return out


def total_feature(parts: Sequence[FeatureTally | CategoryTally]) -> FeatureTally | CategoryTally:
    """The sum of one feature's tallies (all of one kind)."""
    if parts and isinstance(parts[0], CategoryTally):
        return CategoryTally.total([t for t in parts if isinstance(t, CategoryTally)])
    return FeatureTally.total([t for t in parts if isinstance(t, FeatureTally)])


def reference_bins(card: Mapping[str, Any]) -> dict[str, Bins]:
    """The bins of every feature the card's model takes, numeric (drift.FeatureBins) or category
    (categories.CategoryBins), in card order."""
    return {name: CategoryBins(stats) if is_category(stats) else FeatureBins(stats)
            for name, stats in card.get("feature_stats", {}).items() if name in card.get("features", [name])}


def reviewed_hour(r: Row) -> int | None:
    """The hour a case's review was done, which counts toward "reviews done" then; None if not done."""
    return hour_index(r["reviewed_at"]) if r["review_status"] == "done" and r["reviewed_at"] is not None else None


def read_columns(rows: Sequence[Row], bins: Mapping[str, Bins]) -> dict[str, np.ndarray | list[Any]]:
    """The feature values of rows read by monitoring/queries.py (f0, f1, ... in card order): floats, NaN where
    missing, for numeric features; the values as stored for category features."""
    return {name: [r[f"f{i}"] for r in rows] if isinstance(b, CategoryBins)
            else np.array([r[f"f{i}"] for r in rows], dtype=float) for i, (name, b) in enumerate(bins.items())}


def tally(rows: Sequence[Row], bins: Mapping[str, Bins], judged: Sequence[Judgement],
          columns: Columns | None = None) -> Tally:
    """A tally of `rows` (oldest first), each counted under its judgement."""
    t = Tally()
    t.add_fixed(rows, bins, columns)
    for r, j in zip(rows, judged, strict=True):
        t.add_judged(j, reviewed_hour(r))
    return t


def by_hour(rows: Sequence[Row]) -> dict[int, list[Row]]:
    """The rows of each hour of `created_at`, in the order given."""
    groups: dict[int, list[Row]] = {}
    for r in rows:
        groups.setdefault(hour_index(r["created_at"]), []).append(r)
    return dict(sorted(groups.items()))


@dataclass
class Chunk:
    """Some cases as columns, oldest first, as monitoring/queries.py's `case_columns` reads them for a first read
    of many: what a tally counts and no more, without a mapping per case."""

    ids: np.ndarray
    hours: np.ndarray  # buckets.hour_index of created_at
    keys: list[tuple[Any, ...]]  # judged_key of each case
    auto: np.ndarray
    audit: np.ndarray
    prediction: list[str | None]
    confidence: np.ndarray  # NaN where none
    reviewed: np.ndarray  # reviewed_hour, NO_REVIEW where none
    novelty: list[str | None]  # the novelty column as JSON text ("[]": checked and ordinary; None: not checked)
    features: dict[str, np.ndarray | list[Any]]  # as read_columns gives them

    def __len__(self) -> int:
        return len(self.ids)

    def part(self, lo: int, hi: int) -> Chunk:
        return Chunk(self.ids[lo:hi], self.hours[lo:hi], self.keys[lo:hi], self.auto[lo:hi], self.audit[lo:hi],
                     self.prediction[lo:hi], self.confidence[lo:hi], self.reviewed[lo:hi], self.novelty[lo:hi],
                     {name: column[lo:hi] for name, column in self.features.items()})

    def by_hour(self) -> list[tuple[int, Chunk]]:
        """The chunk cut where the hour changes (the cases come ordered by created_at)."""
        cuts = [0, *(np.flatnonzero(np.diff(self.hours)) + 1).tolist(), len(self)]
        return [(int(self.hours[lo]), self.part(lo, hi)) for lo, hi in zip(cuts, cuts[1:], strict=False) if hi > lo]

    @staticmethod
    def join(parts: Sequence[Chunk]) -> Chunk:
        if len(parts) == 1:
            return parts[0]
        names = parts[0].features

        def cat(column: str) -> np.ndarray:
            return np.concatenate([getattr(c, column) for c in parts])

        def listed(column: str) -> list[Any]:
            return [v for c in parts for v in getattr(c, column)]

        return Chunk(cat("ids"), cat("hours"), listed("keys"), cat("auto"), cat("audit"), listed("prediction"),
                     cat("confidence"), cat("reviewed"), listed("novelty"),
                     {name: np.concatenate([c.features[name] for c in parts]) if isinstance(names[name], np.ndarray)
                      else [v for c in parts for v in c.features[name]] for name in names})


def tally_chunk(c: Chunk, bins: Mapping[str, Bins], judged: np.ndarray, judgements: Sequence[Judgement],
                first: datetime, last: datetime) -> Tally:
    """The tally of one hour's cases read as columns (first and last: their earliest and latest created_at),
    each counted under judgements[judged[i]]: the same counts as `tally` of the same cases as rows."""
    t = Tally(cases=len(c), auto=int(c.auto.sum()), audits=int((c.auto & c.audit).sum()), first=first, last=last)
    t.predicted = Counter(p for p in c.prediction if p is not None)
    scored = ~np.isnan(c.confidence)
    for i, auto in enumerate((True, False)):  # ROUTES: "auto", "queue"
        t.confidence[i] += np.histogram(c.confidence[scored & (c.auto == auto)], bins=CONFIDENCE_EDGES)[0]
    t.confidence_sum = float(np.sum(c.confidence[scored])) if scored.any() else 0.0
    t.confidence_n = int(scored.sum())
    t.novelty.checked = len(c) - c.novelty.count(None)
    for i in [i for i, text in enumerate(c.novelty) if text is not None and text != "[]"]:
        reasons = json.loads(c.novelty[i] or "[]")
        if reasons is None:  # a JSON null: not checked, as Novelty.add reads it
            t.novelty.checked -= 1
        elif reasons:
            t.novelty.add_novel(reasons, bool(c.auto[i]))
    t.add_features(bins, c.features)
    for j, n in zip(*np.unique(judged, return_counts=True), strict=True):
        t.judged[judgements[int(j)]] += int(n)
    done = c.reviewed[c.reviewed != NO_REVIEW]
    t.reviewed = Counter({int(h): int(n) for h, n in zip(*np.unique(done, return_counts=True), strict=True)})
    return t
