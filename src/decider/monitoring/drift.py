"""Drift of inputs: live feature values against the training statistics on the model card. Pure: no I/O.

PSI (population stability index) bins: the card's training quantiles (5% steps) with duplicate edges merged
(ties are common: iris petal widths are mostly 0.2), the outer bins open-ended, so every live value lands in
a bin. Bins are closed on the left: a value equal to an edge counts in the bin above it. A bin that no
training value falls in (an interpolated quantile between two measured values) is merged into the bin above
it (the last into the one below). The expected share per bin is counted from the card's training sample
(all of the training data up to 1,000 rows), which is exact where the quantiles are not (ties make a "5%"
bin hold more or less). A bin empty on the live side would make ln(a/e) infinite, so each share is raised
to at least EPSILON (1e-4) before PSI = sum((a - e) * ln(a / e)); shares are not renormalised afterwards.

KS: `scipy.stats.ks_2samp(live, card sample)`, two-sided. With discrete data (measurements to 0.1 cm) the
p-value is approximate; it is a flag for a person to look, not a verdict.

Counted, not kept: live values are tallied into counts (`FeatureTally`) that add up across sets of cases, so
the monitoring cache can keep an hour's worth as a few arrays. KS needs no more than the count of live values
at and between the training sample's distinct values: the two empirical distribution functions differ most at
one of those places, so the statistic from the counts is the one ks_2samp computes from the values. Up to
scipy's exact-method limit (10,000 values) ks_2samp itself is run on stand-in values with the same counts;
beyond it, on the statistic, the asymptotic p-value ks_2samp would use (`kstwo.sf`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import stats as sps

EPSILON = 1e-4
KS_EXACT_N = 10_000  # scipy.stats.ks_2samp's MAX_AUTO_N: up to this many values it computes exactly


@dataclass(frozen=True)
class Thresholds:
    """Past these a figure is flagged. Below `min_n` live values nothing is flagged: too few to say.

    PSI needs far more values than KS: drawn from the training data itself, 30 values give a PSI above 0.2
    every time and 100 values a third of the time (empty bins and sampling noise, about (bins - 1) / n);
    from 200 values about 1% of the time. So PSI is flagged only from `psi_min_n` values.
    """

    psi: float = 0.2  # > 0.2: a significant shift; 0.1-0.2 is worth watching
    psi_watch: float = 0.1
    psi_min_n: int = 200
    ks_pvalue: float = 0.01  # p < 0.01: the live and training samples differ
    out_of_range: float = 0.05  # > 5% of live values outside the training [min, max]
    min_n: int = 30
    class_psi: float = 0.2  # predicted classes against the training class distribution
    class_min_n: int = 100  # with three classes, PSI noise is about 2 / n
    accuracy_drop: float = 0.1  # a quality figure more than 0.1 under the card's test accuracy
    novelty_share: float = 0.05  # > 5% of the checked cases unlike the training data
    novelty_min_n: int = 30  # checked cases; a novel case decided automatically is flagged at any n
    category_pvalue: float = 0.01  # chi-square p < 0.01: live category frequencies differ from training
    category_unseen: float = 0.05  # > 5% of a category field's live values never seen in training


THRESHOLDS = Thresholds()


def psi_bins(stats: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(interior edges, expected share per bin) for one feature's card statistics."""
    edges = np.unique(np.asarray(stats["quantiles"][1:-1], dtype=float))
    sample = stats.get("sample")
    if sample:
        values = np.asarray(sample, dtype=float)
        expected = bin_shares(values, edges)
        while len(edges) and (empty := np.flatnonzero(expected == 0)).size:
            # An interpolated quantile can fall between two measured values and leave a bin no training
            # value lands in; merge it into its neighbour rather than lean on epsilon there.
            edges = np.delete(edges, min(int(empty[0]), len(edges) - 1))
            expected = bin_shares(values, edges)
    else:  # a card without a sample: fall back on the histogram's own bins
        hist = stats["histogram"]
        edges = np.asarray(hist["edges"][1:-1], dtype=float)
        counts = np.asarray(hist["counts"], dtype=float)
        expected = counts / counts.sum()
    return edges, expected


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per bin: (-inf, e0), [e0, e1), ..., [e_last, inf)."""
    if len(values) == 0:
        return np.zeros(len(edges) + 1)
    index = np.searchsorted(edges, values, side="right")
    return np.bincount(index, minlength=len(edges) + 1) / len(values)


def psi(actual: np.ndarray, expected: np.ndarray, epsilon: float = EPSILON) -> float:
    a = np.maximum(np.asarray(actual, dtype=float), epsilon)
    e = np.maximum(np.asarray(expected, dtype=float), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True, eq=False)
class FeatureBins:
    """Where one feature's live values are counted, from its card statistics: the PSI bins, the training
    sample's distinct values (for KS) and the training range."""

    stats: Mapping[str, Any]

    @cached_property
    def psi(self) -> tuple[np.ndarray, np.ndarray]:
        return psi_bins(self.stats)

    @cached_property
    def sample(self) -> np.ndarray | None:
        return np.sort(np.asarray(self.stats["sample"], dtype=float)) if self.stats.get("sample") else None

    @cached_property
    def points(self) -> np.ndarray:
        """The sample's distinct values, p0 < p1 < ...: cell 2i holds live values in (p[i-1], p[i]), cell 2i+1
        those equal to p[i], the last cell those above every one."""
        return np.unique(self.sample) if self.sample is not None else np.zeros(0)

    def tally(self, values: Sequence[float] | np.ndarray) -> FeatureTally:
        live = np.asarray(values, dtype=float)
        edges = self.psi[0]
        below = np.searchsorted(self.points, live, side="left")
        equal = (below < len(self.points)) & (self.points[np.minimum(below, len(self.points) - 1)] == live) \
            if len(self.points) else np.zeros(len(live), dtype=bool)
        return FeatureTally(
            n=len(live),
            psi=np.bincount(np.searchsorted(edges, live, side="right"), minlength=len(edges) + 1),
            cells=np.bincount(2 * below + equal, minlength=2 * len(self.points) + 1),
            outside=int(np.sum((live < self.stats["min"]) | (live > self.stats["max"]))),
            # Summed after dividing: the mean of values near the float maximum (a client may send 1.7e308) stays finite.
            mean=float(np.sum(live / len(live))) if len(live) else 0.0)

    def ks(self, t: FeatureTally) -> tuple[float, float] | None:
        """(statistic, p-value) of ks_2samp(live values, card sample), from the counts."""
        sample, p = self.sample, self.points
        if sample is None or not t.n:
            return None
        if max(t.n, len(sample)) <= KS_EXACT_N:
            # Stand-ins with the same counts per cell: p[i] itself, or the next float above p[i-1] (below p0
            # for the first cell), which lies in the cell whenever the cell holds a value at all.
            stand_in = np.empty(2 * len(p) + 1)
            stand_in[1::2], stand_in[2::2], stand_in[0] = p, np.nextafter(p, np.inf), np.nextafter(p[0], -np.inf)
            result = sps.ks_2samp(np.repeat(stand_in, t.cells), sample)
            return float(result.statistic), float(result.pvalue)
        below = np.concatenate([[0], np.cumsum(t.cells)])  # below[k]: live values in cells 0..k-1
        train_at_or_below = np.searchsorted(sample, p, side="right")
        n1, n2 = t.n, len(sample)
        at_points = below[2 * np.arange(len(p)) + 2] / n1 - train_at_or_below / n2
        # Just under each p[i] (at the largest live value of cell 2i) the training ECDF is still at p[i-1].
        under = below[2 * np.arange(len(p) + 1) + 1] / n1 - np.concatenate([[0], train_at_or_below]) / n2
        largest, smallest = max(at_points.max(), under.max()), np.clip(-at_points.min(), 0, 1)
        d = float(smallest if smallest > largest else largest)
        m, n = sorted([float(n1), float(n2)], reverse=True)
        return d, float(np.clip(sps.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))


@dataclass
class FeatureTally:
    """One feature's live values as counts: per PSI bin, per KS cell (see FeatureBins.points), outside the
    training range; and their mean."""

    n: int
    psi: np.ndarray
    cells: np.ndarray
    outside: int
    mean: float

    @property
    def size(self) -> int:
        """Counts held, for the cache's budget."""
        return self.cells.size + self.psi.size

    @staticmethod
    def total(parts: Sequence[FeatureTally]) -> FeatureTally:
        parts = [t for t in parts if t.n]
        if not parts:
            return FeatureTally(0, np.zeros(0, dtype=int), np.zeros(0, dtype=int), 0, 0.0)
        n = sum(t.n for t in parts)
        return FeatureTally(n, np.sum([t.psi for t in parts], axis=0), np.sum([t.cells for t in parts], axis=0),
                            sum(t.outside for t in parts), float(sum(t.mean * (t.n / n) for t in parts)))


def feature_drift(name: str, values: Sequence[float], stats: Mapping[str, Any],
                  thresholds: Thresholds = THRESHOLDS) -> dict[str, Any]:
    """PSI, KS and the out-of-range share of one feature's live values, with flags."""
    bins = FeatureBins(stats)
    return drift_of(name, bins, bins.tally(values), thresholds)


def drift_of(name: str, bins: FeatureBins, t: FeatureTally, thresholds: Thresholds = THRESHOLDS) -> dict[str, Any]:
    """feature_drift, from the live values' counts."""
    stats = bins.stats
    edges, expected = bins.psi
    actual = t.psi / t.n if t.n else np.zeros(len(edges) + 1)
    out: dict[str, Any] = {
        "name": name, "n": int(t.n), "train_n": int(stats.get("n", 0)),
        "train_mean": stats.get("mean"), "train_min": stats["min"], "train_max": stats["max"],
        "live_mean": t.mean if t.n else None,
        "bins": {"edges": [float(e) for e in edges], "expected": expected.tolist(), "actual": actual.tolist()},
        "psi": None, "ks_statistic": None, "ks_pvalue": None, "out_of_range_share": None,
    }
    if t.n:
        out["psi"] = psi(actual, expected)
        out["out_of_range_share"] = t.outside / t.n
        if (ks := bins.ks(t)) is not None:
            out["ks_statistic"], out["ks_pvalue"] = ks
    n = t.n
    enough, enough_psi = n >= thresholds.min_n, n >= thresholds.psi_min_n
    out["psi_flag"] = enough_psi and out["psi"] is not None and out["psi"] > thresholds.psi
    out["psi_watch"] = enough_psi and out["psi"] is not None and out["psi"] > thresholds.psi_watch
    out["ks_flag"] = enough and out["ks_pvalue"] is not None and out["ks_pvalue"] < thresholds.ks_pvalue
    out["out_of_range_flag"] = (enough and out["out_of_range_share"] is not None
                                and out["out_of_range_share"] > thresholds.out_of_range)
    out["too_few"] = not enough
    out["too_few_for_psi"] = not enough_psi
    out["flag"] = out["psi_flag"] or out["ks_flag"] or out["out_of_range_flag"]
    # Not "ok" while a test is left unjudged for want of values: below min_n none is, below psi_min_n PSI.
    short_of = thresholds.min_n if not enough else (thresholds.psi_min_n if not enough_psi else None)
    out["status"], out["judged_from"] = verdict(out["flag"], out["psi_watch"], short_of)
    return out


def verdict(flag: bool, watch: bool, short_of: int | None) -> tuple[str, int | None]:
    """("flag" | "too_few" | "watch" | "ok", the n the figure is judged from when "too_few").

    A flag raised from enough values stands; otherwise a figure with too few values is "too_few", never
    "ok": a large value over a small sample says little either way.
    """
    if flag:
        return "flag", None
    if short_of is not None:
        return "too_few", short_of
    return ("watch" if watch else "ok"), None


def is_category(stats: Mapping[str, Any]) -> bool:
    """Whether a card's statistics are those of a category field (training counts per category, see
    monitoring/categories.py) rather than a numeric one."""
    return isinstance(stats.get("counts"), Mapping)


def card_bins(card: Mapping[str, Any]) -> dict[str, FeatureBins]:
    """The bins of every numeric feature the card's model takes, in card order."""
    return {name: FeatureBins(stats) for name, stats in card.get("feature_stats", {}).items()
            if name in card.get("features", [name]) and not is_category(stats)}


def input_drift(rows: Sequence[Mapping[str, Any]], card: Mapping[str, Any],
                thresholds: Thresholds = THRESHOLDS) -> list[dict[str, Any]]:
    """Drift of every feature on the card, from the live cases' `features` mappings."""
    return [drift_of(name, bins, bins.tally(feature_values(rows, name)), thresholds)
            for name, bins in card_bins(card).items()]


def feature_values(rows: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    return [v for r in rows if r.get("features") and (v := r["features"].get(name)) is not None]


def class_drift(counts: Mapping[str, int], train: Mapping[str, float],
                thresholds: Thresholds = THRESHOLDS) -> dict[str, Any]:
    """The predicted-class distribution against the training one, with a PSI over classes."""
    labels = list(train) + [c for c in counts if c not in train]
    total = sum(counts.values())
    live = np.array([counts.get(c, 0) / total if total else 0.0 for c in labels])
    expected = np.array([float(train.get(c, 0.0)) for c in labels])
    value = psi(live, expected) if total else None
    flag = bool(total >= thresholds.class_min_n and value is not None and value > thresholds.class_psi)
    status, judged_from = verdict(flag, False, thresholds.class_min_n if total < thresholds.class_min_n else None)
    return {
        "n": total,
        "classes": [{"label": c, "count": int(counts.get(c, 0)), "live_share": float(live[i]),
                     "train_share": float(expected[i])} for i, c in enumerate(labels)],
        "psi": value,
        "flag": flag,
        "status": status,
        "judged_from": judged_from,
    }
