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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

EPSILON = 1e-4


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


def feature_drift(name: str, values: Sequence[float], stats: Mapping[str, Any],
                  thresholds: Thresholds = THRESHOLDS) -> dict[str, Any]:
    """PSI, KS and the out-of-range share of one feature's live values, with flags."""
    live = np.asarray(values, dtype=float)
    edges, expected = psi_bins(stats)
    actual = bin_shares(live, edges)
    out: dict[str, Any] = {
        "name": name, "n": int(len(live)), "train_n": int(stats.get("n", 0)),
        "train_mean": stats.get("mean"), "train_min": stats["min"], "train_max": stats["max"],
        # Summed after dividing: the mean of values near the float maximum (a client may send 1.7e308) stays finite.
        "live_mean": float(np.sum(live / len(live))) if len(live) else None,
        "bins": {"edges": [float(e) for e in edges], "expected": expected.tolist(), "actual": actual.tolist()},
        "psi": None, "ks_statistic": None, "ks_pvalue": None, "out_of_range_share": None,
    }
    if len(live):
        out["psi"] = psi(actual, expected)
        out["out_of_range_share"] = float(np.mean((live < stats["min"]) | (live > stats["max"])))
        if stats.get("sample"):
            ks = sps.ks_2samp(live, np.asarray(stats["sample"], dtype=float))
            out["ks_statistic"], out["ks_pvalue"] = float(ks.statistic), float(ks.pvalue)
    enough, enough_psi = len(live) >= thresholds.min_n, len(live) >= thresholds.psi_min_n
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


def input_drift(rows: Sequence[Mapping[str, Any]], card: Mapping[str, Any],
                thresholds: Thresholds = THRESHOLDS) -> list[dict[str, Any]]:
    """Drift of every feature on the card, from the live cases' `features` mappings."""
    result = []
    for name, stats in card.get("feature_stats", {}).items():
        if name not in card.get("features", [name]):
            continue
        values = [v for r in rows if r.get("features") and (v := r["features"].get(name)) is not None]
        result.append(feature_drift(name, values, stats, thresholds))
    return result


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
