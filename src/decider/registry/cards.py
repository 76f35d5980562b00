"""Model cards: the JSON beside each artifact that says what the model is and what it was trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

QUANTILES = [i / 20 for i in range(21)]  # 0%, 5%, ..., 100%
HIST_BINS = 10


def card_path(artifact: Path) -> Path:
    return artifact.with_suffix(".json")


def read_card(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def feature_statistics(values: np.ndarray, rng: np.random.Generator, sample_size: int) -> dict[str, Any]:
    """Enough of a feature's training distribution to compare live inputs with it later. Missing values
    (NaN) are counted apart; the figures describe the values that were there."""
    present = values[~np.isnan(values)]
    missing = len(values) - len(present)
    values = present if len(present) else np.zeros(1)
    counts, edges = np.histogram(values, bins=HIST_BINS)
    sample = values if len(values) <= sample_size else rng.choice(values, sample_size, replace=False)
    return {
        "n": int(len(present)),
        "missing": int(missing),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "quantiles": [float(q) for q in np.quantile(values, QUANTILES)],
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "sample": [float(v) for v in sorted(sample)],
    }


def percentile(stats: dict[str, Any], value: Any) -> float | None:
    """Where a value falls in the training distribution, 0-100, from the stored sample; None for a category
    or boolean field's value (no order to place it in)."""
    sample = stats.get("sample")
    if not sample or isinstance(value, (str, bool)):
        return None
    below = int(np.searchsorted(sample, value, side="right"))
    return 100.0 * below / len(sample)


def category_key(value: Any) -> str:
    """A category or boolean value as `feature_stats[name]["counts"]` keys it ("false"/"true" for a boolean)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def out_of_range(stats: dict[str, Any], value: Any) -> bool:
    """Outside the training range; for a category (stats with `counts`), a value no training row had."""
    if "counts" in stats:
        return not stats["counts"].get(category_key(value))
    if isinstance(value, (str, bool)):
        return False
    return bool(value < stats["min"] or value > stats["max"])
