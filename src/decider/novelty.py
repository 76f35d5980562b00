"""Recognising inputs unlike the training data, so that the model never decides them alone. Pure: no I/O.

Two checks, fitted at training time (registry/training.py) and stored in the artifact:

- per feature, the range seen in training (the rows fitted and calibrated on) widened by a margin
  (RANGE_MARGIN of its span on each side): a value outside it is named, with the range;
- taken together, the squared Mahalanobis distance from the training rows under scikit-learn's Ledoit-Wolf
  shrunk covariance, on standardised features with missing values filled by the training median. Shrinkage
  keeps the distance defined with many features and few rows, and a distance catches what per-feature ranges
  cannot: a combination of values, each ordinary, that the training data never had together. Its limit is
  the conformal QUANTILE quantile of the distances of the held-out calibration rows, so about 1 in 100 inputs
  drawn like the training data is flagged; the card records the share measured on the test rows.

A category field (its value coded as its index among the categories seen in training, scoring.feature_vector)
has no range and no place in the distance: a value never seen in training (code -1) is named instead, with
the values that were. A boolean counts as a number, 0 or 1.

A model trained before this module existed has only its card's per-feature ranges (`from_card`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from decider.contract import Value, listed
from decider.format import num

RANGE_MARGIN = 0.1
QUANTILE = 0.99
# {"kind": "range" | "category" | "combination" | "unscorable", "feature": str | None, "message": str}
Reason = dict[str, Any]


@dataclass(frozen=True)
class Guard:
    features: tuple[str, ...]
    minimum: np.ndarray  # per feature, over the training rows
    maximum: np.ndarray
    margin: float = RANGE_MARGIN
    # The multivariate check; None for a model that has only ranges.
    fill: np.ndarray | None = None
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    location: np.ndarray | None = None
    precision: np.ndarray | None = None
    limit: float | None = None
    # Per feature, the categories seen in training (() for a number); None for a guard of numbers only.
    # fill, center and scale are per feature (a category's fill: its most common code, center 0, scale 1);
    # location and precision, the distance's, over the number columns alone.
    categories: tuple[tuple[str, ...], ...] | None = None

    @property
    def numbers(self) -> np.ndarray:
        """The columns judged by range and distance (the others are categories)."""
        if self.categories is None:
            return np.arange(len(self.features))
        return np.asarray([j for j, c in enumerate(self.categories) if not c], dtype=int)

    @property
    def low(self) -> np.ndarray:
        return self.minimum - self.margin * (self.maximum - self.minimum)

    @property
    def high(self) -> np.ndarray:
        return self.maximum + self.margin * (self.maximum - self.minimum)

    def distances(self, X: np.ndarray) -> np.ndarray | None:
        """Squared Mahalanobis distance of each row from the training data (inf when it overflows)."""
        if self.precision is None or self.fill is None or self.center is None or self.scale is None:
            return None
        n = self.numbers
        X = X[:, n]
        with np.errstate(all="ignore"):
            Z = (np.where(np.isnan(X), self.fill[n], X) - self.center[n]) / self.scale[n] - self.location
            d2 = np.einsum("ij,jk,ik->i", Z, self.precision, Z)
        return np.where(np.isfinite(d2), d2, np.inf)

    def check(self, X: np.ndarray | Sequence[Sequence[float]],
              records: Sequence[Mapping[str, Value]] | None = None) -> list[list[Reason]]:
        """The reasons each row is unlike the training data; an empty list for an ordinary row. `records`, the
        features each row was made from, only to quote a category value never seen in training."""
        X = np.asarray(X, dtype=float).reshape(-1, len(self.features))
        low, high = self.low, self.high
        with np.errstate(invalid="ignore"):
            outside = (X < low) | (X > high)  # NaN (missing) compares False: not a range problem
            if self.categories is not None:
                known = np.asarray([len(c) for c in self.categories])
                category = known > 0
                outside[:, category] = False
                unseen = category & ((X < 0) | (X >= known))
            else:
                unseen = np.zeros_like(outside)
        d2 = self.distances(X)
        far = ~(d2 <= self.limit) if d2 is not None and self.limit is not None else np.zeros(len(X), bool)
        reasons: list[list[Reason]] = [[] for _ in range(len(X))]
        flagged = outside | unseen
        rows = np.flatnonzero(flagged.any(axis=1) | far)  # the unusual rows; then each in Python, not in numpy
        cells = np.argwhere(flagged[rows])  # (position in rows, feature), row by row: every value named
        values = X[rows[cells[:, 0]], cells[:, 1]].tolist()
        novel = unseen[rows[cells[:, 0]], cells[:, 1]].tolist()
        at = rows.tolist()
        for (r, j), value, new in zip(cells.tolist(), values, novel, strict=True):
            i, name = at[r], self.features[j]
            if new:
                given = records[i].get(name) if records is not None else None
                said = f"{name} = {given!r}" if given is not None else f"{name}: a value"
                assert self.categories is not None
                reasons[i].append({"kind": "category", "feature": name,
                                   "message": f"{said}, not seen in training (one of: {listed(self.categories[j])})"})
            else:
                reasons[i].append({"kind": "range", "feature": name,
                                   "message": f"{name} = {num(value)}, trained on "
                                              f"{num(self.minimum[j])}–{num(self.maximum[j])}"})
        if d2 is not None and self.limit is not None:
            for i, distance in zip(at, d2[rows].tolist(), strict=True):
                if not reasons[i]:
                    reasons[i].append({"kind": "combination", "feature": None,
                                       "message": "each value is within its training range, but not the combination: "
                                       f"distance {num(math.sqrt(distance))} from the training data, where "
                                       f"{QUANTILE:.0%} of held-out rows are within {num(math.sqrt(self.limit))}"})
        return reasons

    def arrays(self) -> dict[str, Any]:
        """What the artifact stores (numpy arrays and floats only: nothing that needs a trusted class)."""
        return {"features": list(self.features), "minimum": self.minimum, "maximum": self.maximum,
                "margin": float(self.margin), "fill": self.fill, "center": self.center, "scale": self.scale,
                "location": self.location, "precision": self.precision, "limit": self.limit,
                **({} if self.categories is None else {"categories": [list(c) for c in self.categories]})}

    def describe(self) -> dict[str, Any]:
        """What the card shows people."""
        numbers = set(self.numbers.tolist())
        return {
            "ranges": {name: {"min": float(lo), "max": float(hi)}
                       for j, (name, lo, hi) in enumerate(zip(self.features, self.minimum, self.maximum, strict=True))
                       if j in numbers},
            **({} if self.categories is None else
               {"categories": {n: list(c) for n, c in zip(self.features, self.categories, strict=True) if c}}),
            "range_margin": self.margin,
            "detector": None if self.limit is None else
            "squared Mahalanobis distance, sklearn.covariance.LedoitWolf on standardised features",
            "limit": self.limit, "quantile": QUANTILE if self.limit is not None else None,
        }


def fit(X_train: np.ndarray, X_cal: np.ndarray, features: Sequence[str],
        categories: Sequence[Sequence[str]] | None = None) -> Guard:
    """Ranges from the training and calibration rows; the distance from the training rows, its limit from the
    calibration rows; `categories` per feature, the values of a category column (() for a number)."""
    from sklearn.covariance import LedoitWolf

    X_train = np.asarray(X_train, dtype=float)
    kinds = None if categories is None or not any(categories) else tuple(tuple(c) for c in categories)
    numbers = [j for j in range(X_train.shape[1]) if kinds is None or not kinds[j]]
    seen = np.vstack([X_train, np.asarray(X_cal, dtype=float)])
    if not numbers:  # categories only: nothing to measure a distance on
        return Guard(tuple(features), np.zeros(len(features)), np.zeros(len(features)), RANGE_MARGIN,
                     _modes(X_train, np.zeros(len(features))), categories=kinds)
    X_num = X_train[:, numbers]
    fill = np.nan_to_num(np.nanmedian(X_num, axis=0)) if len(X_num) else np.zeros(X_num.shape[1])
    Z = np.where(np.isnan(X_num), fill, X_num)
    center, scale = Z.mean(axis=0), Z.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    covariance = LedoitWolf().fit((Z - center) / scale)
    if kinds is not None:  # per feature again: a category column's most common code, center 0, scale 1
        fill, center, scale = (_widened(a, numbers, len(features), 0.0) for a in (fill, center, scale))
        scale[[j for j in range(len(features)) if j not in numbers]] = 1.0
        fill = _modes(X_train, fill, [j for j in range(len(features)) if j not in numbers])
    # The ranges span every row decider saw while training (fitting and calibrating), as the contract's do.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a category column of codes only NaN: no range
        low, high = np.nanmin(seen, axis=0), np.nanmax(seen, axis=0)
    guard = Guard(tuple(features), low, high, RANGE_MARGIN, fill, center, scale, covariance.location_,
                  covariance.precision_, limit=0.0, categories=kinds)
    held = guard.distances(np.asarray(X_cal, dtype=float))
    assert held is not None
    n, k = len(held), math.ceil((len(held) + 1) * QUANTILE)
    if k <= n:
        limit = float(np.sort(held)[k - 1])
    else:  # too few held-out rows for the quantile: the farthest training-like row seen
        trained = guard.distances(X_train)
        assert trained is not None
        limit = float(max(held.max(initial=0.0), trained.max(initial=0.0)))
    return replace(guard, limit=limit)


def _modes(X: np.ndarray, fill: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
    """`fill` with each of `columns` (default all) set to its most common code in `X`."""
    fill = fill.copy()
    for j in range(X.shape[1]) if columns is None else columns:
        codes = X[:, j][~np.isnan(X[:, j])]
        if len(codes):
            fill[j] = float(np.bincount(codes.astype(int).clip(0)).argmax())
    return fill


def _widened(values: np.ndarray, at: list[int], width: int, other: float) -> np.ndarray:
    out = np.full(width, other)
    out[at] = values
    return out


def from_arrays(arrays: Mapping[str, Any]) -> Guard:
    """The guard stored in an artifact."""
    def arr(key: str) -> np.ndarray | None:
        value = arrays.get(key)
        return None if value is None else np.asarray(value, dtype=float)

    minimum, maximum = arr("minimum"), arr("maximum")
    assert minimum is not None and maximum is not None
    limit = arrays.get("limit")
    kinds = arrays.get("categories")
    return Guard(tuple(arrays["features"]), minimum, maximum, float(arrays.get("margin", RANGE_MARGIN)),
                 arr("fill"), arr("center"), arr("scale"), arr("location"), arr("precision"),
                 None if limit is None else float(limit),
                 None if kinds is None else tuple(tuple(str(c) for c in cats) for cats in kinds))


def from_card(card: Mapping[str, Any]) -> Guard:
    """Ranges only, from the training statistics of a card written before the guard was stored."""
    features = list(card["features"])
    stats = card.get("feature_stats", {})
    lo = [float(stats[f]["min"]) if f in stats else -np.inf for f in features]
    hi = [float(stats[f]["max"]) if f in stats else np.inf for f in features]
    return Guard(tuple(features), np.asarray(lo), np.asarray(hi))


def unscorable(model_id: str) -> Reason:
    return {"kind": "unscorable", "feature": None,
            "message": f"{model_id} cannot score these values (its probabilities are not finite)"}
