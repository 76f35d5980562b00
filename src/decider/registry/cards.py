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


def percentile(stats: dict[str, Any], value: float) -> float:
    """Where a value falls in the training distribution, 0-100, from the stored sample."""
    sample = stats["sample"]
    below = int(np.searchsorted(sample, value, side="right"))
    return 100.0 * below / len(sample)


def out_of_range(stats: dict[str, Any], value: float) -> bool:
    return value < stats["min"] or value > stats["max"]
