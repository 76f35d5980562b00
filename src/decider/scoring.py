"""Turn a case's features into a model's row, and a model's class probabilities into a prediction and a
confidence. Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from decider.contract import UNSEEN, Contract, FieldSpec, Value


class Score(NamedTuple):  # a tuple: a batch makes 1,000 of them, a frozen dataclass costs ~3x more each
    prediction: str
    confidence: float  # the top class probability
    probabilities: dict[str, float]


def scores_from(labels: Sequence[str], probabilities: np.ndarray) -> list[Score]:
    """One Score per row of a (rows, classes) matrix of finite probabilities. The top class is the
    prediction; ties go to the first label (numpy's argmax)."""
    probabilities = np.asarray(probabilities, dtype=float).reshape(-1, len(labels))
    best = probabilities.argmax(axis=1)
    top = probabilities[np.arange(len(best)), best].tolist()
    names = list(labels)
    return [Score(names[b], c, dict(zip(names, row, strict=True)))
            for b, c, row in zip(best.tolist(), top, probabilities.tolist(), strict=True)]


def score_from(labels: Sequence[str], probabilities: Sequence[float]) -> Score:
    """`scores_from` for one row."""
    return scores_from(labels, np.asarray(probabilities, dtype=float))[0]


def feature_vector(names: Sequence[str], values: Mapping[str, Value], contract: Contract) -> list[float]:
    """Order the named values as the model expects them, by the model's own contract (`LoadedModel.contract`):
    a number as it is, a boolean as 1 or 0, a category value as its index in the field's training categories
    (UNSEEN, -1, for one never seen: the pipeline encodes it as none of them, and the novelty guard flags it).
    A missing or null value is NaN, which every model decider trains can take (the contract allows null only
    where training data had gaps). A value of the wrong type (past the contract's check, as a bug could let
    one through) raises ValueError naming the field: never scored as some other value."""
    if contract.numeric:
        try:
            return [math.nan if (v := values.get(name)) is None else float(v) for name in names]  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass  # text where this model takes a number: judged one by one below
    fields, codes = contract.fields, contract.codes
    out = []
    for name in names:
        v, spec = values.get(name), fields.get(name) or FieldSpec(name)
        if v is None:
            out.append(math.nan)
        elif problem := spec.wrong_type(v):
            raise ValueError(f"features.{name}: {problem}")
        elif spec.type == "category":
            out.append(float(codes[name].get(v, UNSEEN)))  # type: ignore[arg-type]
        else:
            out.append(float(v))  # a number, or a boolean as 1 or 0
    return out
