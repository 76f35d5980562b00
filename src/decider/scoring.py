"""Turn a model's class probabilities into a prediction and a confidence. Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    prediction: str
    confidence: float  # the top class probability
    probabilities: dict[str, float]


def score_from(labels: Sequence[str], probabilities: Sequence[float]) -> Score:
    """The top class is the prediction; ties go to the first label, as numpy's argmax does."""
    probs = {label: float(p) for label, p in zip(labels, probabilities, strict=True)}
    best = max(range(len(labels)), key=lambda i: (probabilities[i], -i))
    return Score(prediction=labels[best], confidence=float(probabilities[best]), probabilities=probs)


def feature_vector(names: Sequence[str], values: Mapping[str, float | None]) -> list[float]:
    """Order the named values as the model expects them; a missing or null value is NaN, which every model
    decider trains can take (the contract allows null only where training data had gaps)."""
    return [math.nan if (v := values.get(name)) is None else float(v) for name in names]
