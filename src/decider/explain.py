"""Why the model suggests what it suggests: each feature's share of the margin between the suggested class and
the runner-up. Pure: no I/O.

Both methods keep one promise, `base + sum(contributions) == margin`: the shares add up to exactly what the
model computed for this case, against `base`, the model's average margin over a background sample.

- **Linear** (a linear classifier, alone or at the end of a Pipeline whose other steps work column by column,
  such as SimpleImputer, StandardScaler or a ColumnTransformer of one-hot encoders; inside decider's
  calibration wrapper or not): the margin is the linear model's decision-function difference between the two
  classes, its log-odds before calibration. Such a model is a sum of one function per input column,
  m(x) = b + sum_j g_j(x_j), so a feature's share g_j(x_j) - E[g_j] is exact. It is computed by switching
  that one feature of each background row to the case's value, which also gathers the columns a one-hot
  encoder makes from one field back onto that field.
- **Any other model**: interventional Shapley values of the probability difference p(suggested) -
  p(runner-up), estimated by permutation sampling (Štrumbelj and Kononenko, 2014) with antithetic pairs.
  Each chain starts at a background row and switches the features to the case's values one at a time in a
  random order (and then in the reverse order); each switch's step in the margin is that feature's share.
  Every chain sums to m(x) - m(its background row), so the total is exact and only its split is estimated.
  This is what `shap`'s PermutationExplainer does; here it is one `predict_proba` call on at most
  ROW_BUDGET rows (the caller sizes it to a time: review/insight.py) and needs none of shap's dependencies
  (numba, llvmlite, pandas), nor its TreeExplainer, which does not take decider's calibrated pipelines.

The background is drawn from the per-feature training samples on the model card, independently per feature
(`background_from_stats`): the card keeps no joint training rows. For a linear model that is all the exact
shares need (E[g_j] depends on feature j alone); for others it is the usual "independent features" reading of
interventional Shapley values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

ROW_BUDGET = 2048  # rows per explanation at most, in one predict call (the caller may give fewer: review/insight.py)
MIN_PAIRS, MAX_PAIRS = 4, 200  # antithetic permutation pairs for the Shapley estimate
BACKGROUND_ROWS = 100
# Steps that transform each input column on its own (so a linear model after them stays additive per field).
COLUMNWISE = {"SimpleImputer", "StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler", "OneHotEncoder",
              "OrdinalEncoder", "KBinsDiscretizer", "MissingIndicator"}
Method = Literal["linear", "shapley"]
Margin = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Share:
    feature: str
    value: float  # the model's input (NaN: missing, imputed by the model)
    contribution: float  # > 0: towards the suggested class; < 0: towards the runner-up


@dataclass(frozen=True)
class Explanation:
    suggested: str
    runner_up: str
    method: Method
    unit: str  # what the margin is measured in
    base: float  # the average margin over the background rows
    margin: float  # the margin at this case: base + sum of the shares
    shares: tuple[Share, ...]  # largest |contribution| first
    exact: bool
    chains: int  # permutation chains behind a Shapley estimate (0 for the exact linear shares)
    rows: int = 0  # rows the model scored for it

    def as_dict(self) -> dict[str, Any]:
        return {"suggested": self.suggested, "runner_up": self.runner_up, "method": self.method,
                "unit": self.unit, "base": self.base, "margin": self.margin, "exact": self.exact,
                "chains": self.chains,
                "features": [{"name": s.feature, "value": None if np.isnan(s.value) else s.value,
                              "contribution": s.contribution} for s in self.shares]}


def unwrapped(estimator: Any) -> Any:
    """The fitted model inside decider's calibration wrapper (CalibratedClassifierCV around a FrozenEstimator,
    one calibrated copy); the estimator itself when it is not wrapped so."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    inner = estimator
    if isinstance(inner, CalibratedClassifierCV) and len(getattr(inner, "calibrated_classifiers_", ())) == 1:
        inner = inner.calibrated_classifiers_[0].estimator
    return inner.estimator if isinstance(inner, FrozenEstimator) else inner


def _columnwise(step: Any) -> bool:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if step is None or step in ("passthrough", "drop"):
        return True
    if isinstance(step, Pipeline):
        return all(_columnwise(s) for _, s in step.steps)
    if isinstance(step, ColumnTransformer):
        return all(_columnwise(t) for _, t, _ in step.transformers_)
    return type(step).__name__ in COLUMNWISE


def linear_model(estimator: Any) -> Any | None:
    """The inner model when it is additive per input column (a linear classifier after column-wise steps only),
    else None: such a model's shares are exact."""
    from sklearn.linear_model._base import LinearClassifierMixin
    from sklearn.pipeline import Pipeline

    inner = unwrapped(estimator)
    final, before = (inner.steps[-1][1], [s for _, s in inner.steps[:-1]]) if isinstance(inner, Pipeline) \
        else (inner, [])
    if isinstance(final, LinearClassifierMixin) and all(_columnwise(s) for s in before):
        return inner
    return None


def log_odds_margin(model: Any, a: int, b: int) -> Margin:
    """The decision-function difference between classes a and b (indices into model.classes_): for a
    logistic regression, log(p_a / p_b) before any calibration."""
    def margin(X: np.ndarray) -> np.ndarray:
        scores = np.asarray(model.decision_function(X), dtype=float)
        if scores.ndim == 1:  # binary: one score, positive towards classes_[1]
            scores = np.column_stack([np.zeros_like(scores), scores])
        return scores[:, a] - scores[:, b]
    return margin


def top_two(probabilities: Sequence[float]) -> tuple[int, int]:
    """The suggested class and the runner-up; ties go to the first label, as scoring.score_from does."""
    order = sorted(range(len(probabilities)), key=lambda i: (-probabilities[i], i))
    return order[0], order[1]


def background_from_stats(features: Sequence[str], stats: Mapping[str, Any], *, rows: int = BACKGROUND_ROWS,
                          seed: int = 0, fill: Sequence[float] | None = None) -> np.ndarray:
    """Background rows drawn from each feature's training sample on the card, independently per feature. A
    feature with no sample takes `fill` (the guard's training median), else NaN (left to the model's imputer)."""
    rng = np.random.default_rng(seed)
    out = np.empty((rows, len(features)))
    for j, name in enumerate(features):
        sample = np.asarray((stats.get(name) or {}).get("sample") or [], dtype=float)
        sample = sample[np.isfinite(sample)]
        if len(sample):
            out[:, j] = rng.choice(sample, rows, replace=len(sample) < rows)
        else:
            out[:, j] = fill[j] if fill is not None else np.nan
    return out


def linear_shares(margin: Margin, x: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(shares, base, margin at x) of an additive model: feature j's share is the mean change in the margin
    when j alone, in each background row, takes the case's value."""
    n, d = background.shape
    switched = np.repeat(background[None], d, axis=0)  # (d, n, d): copy j has feature j set to the case's value
    idx = np.arange(d)
    switched[idx, :, idx] = x[:, None]
    m = margin(np.vstack([background, switched.reshape(d * n, d), x[None]]))
    at_background, at_x = m[:n], float(m[-1])
    shares = (m[n:-1].reshape(d, n) - at_background[None]).mean(axis=1)
    return shares, float(at_background.mean()), at_x


def permutation_chains(x: np.ndarray, background: np.ndarray, *, pairs: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `pairs` antithetic pairs of chains, chain after chain (each d + 1 rows: its background row,
    then one more feature at the case's value per row, the last row the case itself), and each chain's ranks
    (ranks[c, j]: the step at which chain c switches feature j)."""
    d = len(x)
    orders = []
    for _ in range(pairs):
        order = rng.permutation(d)
        orders += [order, order[::-1]]
    starts = background[rng.integers(len(background), size=pairs).repeat(2)]
    ranks = np.argsort(np.asarray(orders), axis=1)
    switched = ranks[:, None, :] < np.arange(d + 1)[None, :, None]  # (chains, d + 1, d)
    rows = np.where(switched, x[None, None, :], starts[:, None, :])
    return rows.reshape(-1, d), ranks


def chain_shares(m: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(shares, base, margin at x) from the margin along each chain (m: chains x (d + 1))."""
    moves = np.diff(m, axis=1)  # moves[c, s]: the step of chain c's s-th switch
    shares = np.take_along_axis(moves, ranks, axis=1).mean(axis=0)
    return shares, float(m[:, 0].mean()), float(m[:, -1].mean())


def explain(estimator: Any, labels: Sequence[str], features: Sequence[str], x: Sequence[float],
            background: np.ndarray, *, seed: int = 0, budget: int = ROW_BUDGET) -> Explanation:
    """Each feature's share of the margin between the suggested class and the runner-up for input `x` (the
    model's input, built as scoring builds it). Raises ValueError when the model cannot score the input or its
    margin is not finite (values so extreme it overflows)."""
    if len(labels) < 2:
        raise ValueError("a model with one class suggests nothing to explain")
    row = np.asarray(x, dtype=float)
    d = len(row)
    background = np.asarray(background, dtype=float)
    with np.errstate(all="ignore"):
        linear = linear_model(estimator)
        if linear is not None:
            a, b = _top_two(np.asarray(estimator.predict_proba(row[None]), dtype=float)[0])
            names = [str(c) for c in linear.classes_]
            n = min(len(background), max(16, budget // max(d, 1)))
            shares, base, at_x = linear_shares(log_odds_margin(linear, names.index(labels[a]), names.index(labels[b])),
                                               row, background[:n])
            method: Method = "linear"
            chains, scored = 0, n * (d + 1) + 1
        else:
            # One predict_proba call for everything, the case's own row included: a forest's fixed cost per
            # call (tens of ms for 100 trees) is most of what an explanation costs.
            pairs = int(np.clip(budget // (2 * (d + 1)), MIN_PAIRS, MAX_PAIRS))
            rows, ranks = permutation_chains(row, background, pairs=pairs, rng=np.random.default_rng(seed))
            P = np.asarray(estimator.predict_proba(rows), dtype=float)
            a, b = _top_two(P[d])  # the last row of the first chain is the case
            shares, base, at_x = chain_shares((P[:, a] - P[:, b]).reshape(len(ranks), d + 1), ranks)
            method, chains, scored = "shapley", len(ranks), len(rows)
    if not (np.isfinite(shares).all() and np.isfinite(base) and np.isfinite(at_x)):
        raise ValueError("the model's margin for this input is not finite")
    order = sorted(range(d), key=lambda j: (-abs(shares[j]), j))
    return Explanation(
        suggested=labels[a], runner_up=labels[b], method=method,
        unit="log-odds, before calibration" if method == "linear" else "probability",
        base=base, margin=at_x, shares=tuple(Share(features[j], float(row[j]), float(shares[j])) for j in order),
        exact=method == "linear", chains=chains, rows=scored)


def _top_two(probabilities: np.ndarray) -> tuple[int, int]:
    if not np.isfinite(probabilities).all():
        raise ValueError("the model's probabilities for this input are not finite")
    return top_two(probabilities.tolist())
