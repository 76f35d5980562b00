"""`decider train`: from a table to a model version whose confidence can be trusted, with its card.

The rows are split three ways (stratified): the model is fitted on the training part, its probabilities are
calibrated on a calibration part it never saw, and every figure on the card comes from a test part that
neither step saw. The novelty guard (decider/novelty.py) is fitted on the training part and its limit set on
the calibration part, so its false-alarm rate on inputs like the training data is measured, not assumed.

A category column is held as codes (each value's index among the column's values, sorted), a boolean one as
0/1, so every matrix stays numeric; the fitted pipeline one-hot encodes the codes first (`encoded`), and
scoring codes a case's values the same way from the card's contract (scoring.feature_vector). One-hot for
the trees too, not HistGradientBoosting's own categorical splits: decider's structure check refuses those
(registry/structures.py), and a handful of columns per category costs the trees little.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from sklearn.base import BaseEstimator, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_selection import SequentialFeatureSelector
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, confusion_matrix, log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from decider import novelty
from decider.contract import BOOLEAN_SPELLINGS, contract_from_columns
from decider.registry.cards import card_path, feature_statistics

SAMPLE_SIZE = 1000  # training values kept per feature in the card, for two-sample drift tests
RELIABILITY_BINS = 10
ISOTONIC_FROM = 1000  # isotonic calibration needs about this many rows; below it, temperature scaling
MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
AUTO_CATEGORIES = 50  # a text column with more distinct values is more like an id or free text: asked, not guessed
MAX_CATEGORIES = 1000  # even declared with --category: one column per value in the model
ESTIMATORS = ("auto", "logistic", "random_forest", "hist_gradient_boosting", "seed")
CALIBRATIONS = ("auto", "temperature", "isotonic", "sigmoid", "none")
Progress = Callable[[str], None]


@dataclass
class Dataset:
    X: np.ndarray  # float, NaN where a value is missing
    y: np.ndarray
    feature_names: list[str]
    source: str
    notes: list[str] = field(default_factory=list)  # what reading the data dropped, for the card
    # How many cases each row stands for (cases/export.py: 1/p for an audit), passed to the estimator and the
    # calibration map as sample_weight; None: every row counts once.
    weight: np.ndarray | None = None
    # Per column, whether the contract must allow a null even where these rows have none (the live one does).
    nullable: np.ndarray | None = None
    # Per column, "number", "category" (X holds codes into `categories[name]`) or "boolean" (X holds 0/1);
    # None: every column a number.
    types: list[str] | None = None
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def type_of(self, j: int) -> str:
        return self.types[j] if self.types is not None else "number"

    def levels(self, columns: list[int]) -> list[int]:
        """Per column of `columns`, how many categories it has (0 for a number or a boolean)."""
        return [len(self.categories.get(self.feature_names[j], ())) if self.type_of(j) == "category" else 0
                for j in columns]


def iris_dataset() -> Dataset:
    """The bundled iris data, with class names as labels rather than 0/1/2."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    y = np.asarray(iris.target_names)[iris.target]
    return Dataset(iris.data, y, list(iris.feature_names), "sklearn.datasets.load_iris")


def _number(text: str) -> float | None:
    """A cell as a float, NaN when it is one of the usual spellings of missing, None when it is text."""
    if text.strip().lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _column(cells: list[str], declared: str | None) -> tuple[str, np.ndarray, tuple[str, ...]] | str:
    """A CSV column's (type, values, categories), or why it cannot be read (with `line` for the first bad cell's
    row from 0). Numbers when every present cell is one; yes/no or true/false text a boolean; other text a
    category (with `declared` "category" always, even numbers-looking codes such as 01234)."""
    present = [(i, c.strip()) for i, c in enumerate(cells) if c.strip().lower() not in MISSING]
    values = np.full(len(cells), np.nan)
    if declared != "category":
        numbers = [(i, _number(c)) for i, c in present]
        text = [(i, cells[i]) for i, v in numbers if v is None]
        if not text:
            for i, v in numbers:
                values[i] = v
            return "number", values, ()
        if declared == "number" or len(text) * 2 < len(present):
            i, cell = text[0]
            share = "" if declared == "number" else f" ({len(present) - len(text)} of its {len(present)} values are)"
            return f"line {i + 2}: {cell!r} is not a number{share}"
        spelled = {c.lower() for _, c in present}
        for words in BOOLEAN_SPELLINGS:
            if declared is None and spelled <= set(words):
                for i, c in present:
                    values[i] = float(words[c.lower()])
                return "boolean", values, ()
    categories = tuple(sorted({c for _, c in present}))
    # Undeclared, a column of many values, or of a new value every other row, is more like an id than a category.
    limit = MAX_CATEGORIES if declared == "category" else min(AUTO_CATEGORIES, max(10, len(present) // 2))
    if len(categories) > limit:
        i, cell = present[0]
        return (f"is not numeric (line {i + 2}: {cell!r}) and has {len(categories):,} distinct values in "
                f"{len(present):,} rows, more like an id or free text than a category")
    code = {c: k for k, c in enumerate(categories)}
    for i, c in present:
        values[i] = code[c]
    return "category", values, categories


def csv_dataset(path: Path, target: str, exclude: tuple[str, ...] = (), categories: tuple[str, ...] = (),
                numbers: tuple[str, ...] = ()) -> Dataset:
    """A CSV with a header row: `target` is the label, every other column (but `exclude`) a feature.

    Rows without a label are dropped (and counted on the card); a feature cell may be empty or NA (missing).
    A column of numbers is a number; of yes/no or true/false a boolean; of other text (at most AUTO_CATEGORIES
    distinct values) a category. `categories` and `numbers` declare a column's type instead.
    """
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    if target not in header:
        raise ValueError(f"{path}: no column {target!r} (columns: {', '.join(header)})")
    unknown = [name for name in exclude if name not in header]
    if unknown:
        raise ValueError(f"{path}: --exclude {unknown[0]!r}: no such column")
    if target in exclude:
        raise ValueError(f"{path}: --exclude {target!r} is the target; it cannot be left out")
    for option, given in (("--category", categories), ("--number", numbers)):
        for name in given:
            if name not in header or name == target or name in exclude:
                why = "no such column" if name not in header else "the target" if name == target else "left out"
                raise ValueError(f"{path}: {option} {name!r}: {why}")
    if both := sorted(set(categories) & set(numbers)):
        raise ValueError(f"{path}: {both[0]!r} is declared both --category and --number")
    names = [name for name in header if name != target and name not in exclude]
    if not names:
        raise ValueError(f"{path}: no feature columns besides the target {target!r}")
    labelled = [row for row in rows if (row.get(target) or "").strip().lower() not in MISSING]
    notes = [f"{len(rows) - len(labelled)} rows without a {target!r} label were left out"] \
        if len(labelled) < len(rows) else []
    if exclude:
        notes.append(f"columns left out with --exclude (not in the input contract): {list(exclude)}")
    X = np.empty((len(labelled), len(names)))
    types, found = [], {}
    for j, name in enumerate(names):
        declared = "category" if name in categories else "number" if name in numbers else None
        column = _column([row.get(name) or "" for row in labelled], declared)
        if isinstance(column, str):
            out = f"leave the column out with --exclude {name!r}"
            fix = (f"fix the cell, declare it --category {name!r}, or {out}" if declared is None else
                   f"fix the cell, or {out}") if "not a number" in column else \
                f"{out}" + ("" if declared else f", or declare it --category {name!r} to keep it")
            raise ValueError(f"{path}: column {name!r}{'' if column.startswith('is ') else ':'} {column}; {fix}")
        kind, X[:, j], seen = column
        types.append(kind)
        if seen:
            found[name] = seen
        if np.isnan(X[:, j]).all():
            raise ValueError(f"{path}: column {name!r} has no values; leave it out with --exclude {name!r}")
    detected = [f"{n} ({t}{f', {len(found[n])} values' if n in found else ''})"
                for n, t in zip(names, types, strict=True) if t != "number"]
    if detected:
        notes.append("columns read as categories or booleans: " + ", ".join(detected))
    y = np.array([row[target].strip() for row in labelled])
    return Dataset(X, y, names, f"csv:{path.name} target={target}", notes,
                   types=types if detected else None, categories=found)


def cases_dataset(records: list[dict[str, Any]], fields: list[str], *, source: str,
                  nullable: list[str] | tuple[str, ...] = (), types: dict[str, str] | None = None) -> Dataset:
    """Exported cases (cases/export.py) as a Dataset: `fields` are the columns, in the contract's order (a field
    a case lacks is missing), the final label the target and each case's sampling weight its row's weight.
    `types`, the live contract's, says which fields are categories (their values: those the cases have, so a
    value first seen in cases becomes one the new version knows) and booleans; the others are numbers."""
    rows = [r for r in records if str(r.get("label") or "").strip()]
    if not rows:
        raise ValueError(f"{source}: no labelled cases")
    kinds = [(types or {}).get(name, "number") for name in fields]
    found = {name: tuple(sorted({str(v) for r in rows if (v := r["features"].get(name)) is not None}))
             for name, kind in zip(fields, kinds, strict=True) if kind == "category"}
    codes = {name: {c: k for k, c in enumerate(values)} for name, values in found.items()}
    X = np.full((len(rows), len(fields)), np.nan)
    for i, r in enumerate(rows):
        for j, name in enumerate(fields):
            value = r["features"].get(name)
            if value is None:
                continue
            if kinds[j] == "category":
                X[i, j] = codes[name][str(value)]
            elif isinstance(value, str) or (kinds[j] == "number" and isinstance(value, bool)):
                raise ValueError(f"{source}: case {r.get('case_id')}: features.{name} is {value!r}, "
                                 f"not a {kinds[j]}")
            else:
                X[i, j] = float(value)
    weight = np.array([float(r.get("weight") or 1.0) for r in rows])
    if not np.isfinite(weight).all() or (weight <= 0).any():
        bad = rows[int(np.flatnonzero(~np.isfinite(weight) | (weight <= 0))[0])]
        raise ValueError(f"{source}: case {bad.get('case_id')}: weight {bad.get('weight')!r} is not a positive number")
    for j, name in enumerate(fields):
        if np.isnan(X[:, j]).all():
            raise ValueError(f"{source}: no case has a value for {name!r}; a model cannot learn from it")
    by_source = Counter(str(r.get("label_source")) for r in rows)
    notes = ["labelled cases by source: " + ", ".join(f"{k} {v}" for k, v in sorted(by_source.items())),
             f"sample weights from {weight.min():g} to {weight.max():g} (the rows stand for {weight.sum():.0f} cases)"]
    if len(rows) < len(records):
        notes.insert(0, f"{len(records) - len(rows)} cases without a label were left out")
    y = np.array([str(r["label"]).strip() for r in rows])
    return Dataset(X, y, list(fields), source, notes, weight=weight,
                   nullable=np.array([name in nullable for name in fields]),
                   types=kinds if any(k != "number" for k in kinds) else None, categories=found)


def _fit(model: Any, X: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> Any:
    """`model.fit`, with `sample_weight` routed to a pipeline's last step. Every estimator decider offers takes
    it; one that did not would raise a TypeError here rather than count each row once in silence."""
    if weight is None:
        return model.fit(X, y)
    key = f"{model.steps[-1][0]}__sample_weight" if isinstance(model, Pipeline) else "sample_weight"
    return model.fit(X, y, **{key: weight})


def make_estimator(kind: str, seed: int, levels: list[int] | None = None) -> BaseEstimator:
    """The few well-known estimators decider offers, each able to take a missing value; with `levels` (per
    column, its number of categories, 0 for a number) behind a one-hot encoding of the category columns."""
    estimator = _estimator(kind, seed)
    return encoded(estimator, levels) if levels and any(levels) else estimator


def encoded(estimator: BaseEstimator, levels: list[int]) -> Pipeline:
    """`estimator` behind a one-hot encoding of the code columns (those with levels): a column per category
    seen in training, all zero for a code never seen (UNSEEN, -1) or missing (NaN); the other columns pass
    through, after the encoded ones."""
    columns = [j for j, k in enumerate(levels) if k]
    encoder = OneHotEncoder(categories=[list(range(levels[j])) for j in columns], handle_unknown="ignore",
                            sparse_output=False)
    encode = ColumnTransformer([("categories", encoder, columns)], remainder="passthrough", sparse_threshold=0)
    steps = estimator.steps if isinstance(estimator, Pipeline) else [("model", estimator)]
    return Pipeline([("encode", encode), *steps])


def _estimator(kind: str, seed: int) -> BaseEstimator:
    if kind == "seed":  # the reference recipe: unregularised logistic regression on the raw features
        return LogisticRegression(C=np.inf, max_iter=5000)
    if kind == "logistic":
        return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                         ("scale", StandardScaler()), ("model", LogisticRegression(C=1.0, max_iter=5000))])
    if kind == "random_forest":
        return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                         ("model", RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=-1))])
    if kind == "hist_gradient_boosting":  # takes NaN natively
        return HistGradientBoostingClassifier(random_state=seed)
    raise ValueError(f"--estimator {kind!r}: choose one of {', '.join(ESTIMATORS)}")


def _single_threaded(model: Any) -> Any:
    """A forest fitted on every core predicts one case faster on one thread (no pool start per call)."""
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if isinstance(final, RandomForestClassifier):
        final.set_params(n_jobs=None)
    return model


def choose_estimator(X: np.ndarray, y: np.ndarray, seed: int, progress: Progress,
                     weight: np.ndarray | None = None, levels: list[int] | None = None) -> tuple[str, dict[str, float]]:
    """`auto`: the candidate with the best 3-fold cross-validated accuracy on the training rows (fitted and
    scored with the rows' weights when they have some); on a tie, the simpler one (the order below)."""
    folds = StratifiedKFold(n_splits=min(3, _smallest_class(y)), shuffle=True, random_state=seed)
    scores: dict[str, float] = {}
    for kind in ("logistic", "random_forest", "hist_gradient_boosting"):
        progress(f"cross-validating {kind}")
        if weight is None:
            scores[kind] = float(np.mean(cross_val_score(make_estimator(kind, seed, levels), X, y, cv=folds)))
            continue
        scores[kind] = float(np.mean([
            accuracy_score(y[judge], _fit(make_estimator(kind, seed, levels), X[fit], y[fit], weight[fit])
                           .predict(X[judge]), sample_weight=weight[judge]) for fit, judge in folds.split(X, y)]))
    best = max(scores, key=lambda k: (round(scores[k], 3), -list(scores).index(k)))
    return best, scores


def _smallest_class(y: np.ndarray) -> int:
    return int(min(np.unique(y, return_counts=True)[1]))


def select_features(X: np.ndarray, y: np.ndarray, k: int, kind: str, progress: Progress) -> list[int]:
    """The seed recipe's forward selection of `k` columns (5-fold), scored with the seed's own estimator for
    the seed recipe and with a cheap regularised logistic model otherwise (a forest per candidate column
    would take minutes). It sees a category column's codes as numbers: a rough judge of such a column, which
    the model itself then one-hot encodes."""
    progress(f"selecting {k} of {X.shape[1]} features")
    selector_model = make_estimator("seed" if kind == "seed" else "logistic", 0)
    selector = SequentialFeatureSelector(selector_model, n_features_to_select=k, cv=min(5, _smallest_class(y)))
    # The selector refuses NaN itself, before its estimator's imputer could fill it: fill for choosing only.
    selector.fit(SimpleImputer(strategy="median", keep_empty_features=True).fit_transform(X), y)
    return [int(i) for i in np.flatnonzero(selector.get_support())]


def calibrate(model: Any, X: np.ndarray, y: np.ndarray, method: str, seed: int,
              weight: np.ndarray | None = None) -> tuple[Any, str, dict[str, float]]:
    """Fit a calibration map on rows the model never saw (the model itself is frozen, not refitted).

    `auto` chooses among no calibration, temperature scaling and (from 1,000 rows) isotonic regression by
    5-fold cross-validated log loss on the calibration rows: a map fitted on few rows can make matters worse,
    and the rows it is judged on are not the test rows, which stay unseen. With `weight`, the map is fitted and
    judged with the rows' weights.
    """
    if method == "auto" and _smallest_class(y) < 4:
        return model, "none", {}  # too few rows of some class to fit a map and judge it: keep the model's own
    if method != "none" and _smallest_class(y) < 2:
        raise ValueError(f"the calibration part has {len(y)} rows, too few to hold 2 of every class; gather more "
                         f"rows, raise --holdout, or train with --calibration none")
    scores: dict[str, float] = {}
    if method == "auto":
        candidates = ["none", "temperature"] + (["isotonic"] if len(y) >= ISOTONIC_FROM else [])
        scores = {m: _cv_log_loss(model, X, y, m, seed, weight) for m in candidates}
        method = min(candidates, key=lambda m: (round(scores[m], 4), candidates.index(m)))
        scores = {m: v for m, v in scores.items() if math.isfinite(v)}  # JSON has no Infinity
    return _fit_map(model, X, y, method, weight), method, scores


def _fit_map(model: Any, X: np.ndarray, y: np.ndarray, method: str, weight: np.ndarray | None = None) -> Any:
    if method == "none":
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # The weights are for the map only: the frozen model is not refitted, which scikit-learn warns about.
        warnings.filterwarnings("ignore", "Since FrozenEstimator does not appear to accept sample_weight")
        # The model is frozen, so the folds only split the rows it predicts: two will do.
        return CalibratedClassifierCV(FrozenEstimator(model), method=method, cv=2).fit(X, y, sample_weight=weight)


def _cv_log_loss(model: Any, X: np.ndarray, y: np.ndarray, method: str, seed: int,
                 weight: np.ndarray | None = None) -> float:
    folds = StratifiedKFold(n_splits=max(2, min(5, _smallest_class(y) // 2)), shuffle=True, random_state=seed)
    labels = list(model.classes_)
    losses = []
    for fit_rows, judge_rows in folds.split(X, y):
        if method != "none" and _smallest_class(y[fit_rows]) < 2:
            return math.inf
        calibrated = _fit_map(model, X[fit_rows], y[fit_rows], method, None if weight is None else weight[fit_rows])
        with np.errstate(all="ignore"):
            proba = calibrated.predict_proba(X[judge_rows])
        losses.append(log_loss(y[judge_rows], np.clip(proba, 1e-15, 1), labels=labels,
                               sample_weight=None if weight is None else weight[judge_rows]))
    return float(np.mean(losses))


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict[str, Any]]:
    """The reliability diagram's points: per equal-width confidence bin with rows in it, the mean confidence
    and the share that was right."""
    index = np.clip((confidence * bins).astype(int), 0, bins - 1)
    points = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            points.append({"low": b / bins, "high": (b + 1) / bins, "confidence": float(confidence[inside].mean()),
                           "accuracy": float(correct[inside].mean()), "n": int(inside.sum())})
    return points


def expected_calibration_error(points: list[dict[str, Any]]) -> float:
    """Mean |accuracy - confidence| over the bins, weighted by the rows in each."""
    total = sum(p["n"] for p in points)
    return float(sum(p["n"] * abs(p["accuracy"] - p["confidence"]) for p in points) / total) if total else 0.0


def evaluate_probabilities(proba: np.ndarray, y: np.ndarray, labels: list[str]) -> tuple[dict[str, float],
                                                                                       list[dict[str, Any]]]:
    """Accuracy, log loss, Brier score and ECE of class probabilities, and their reliability points."""
    predicted = np.asarray(labels)[proba.argmax(axis=1)]
    confidence = proba.max(axis=1)
    points = reliability(confidence, predicted == y)
    figures = {
        "accuracy": float(accuracy_score(y, predicted)),
        "log_loss": float(log_loss(y, np.clip(proba, 1e-15, 1), labels=labels)),
        "brier": float(brier_score_loss(y, proba, labels=labels)),
        "ece": expected_calibration_error(points),
    }
    return figures, points


def _split(data: Dataset, holdout: float, seed: int) -> tuple[np.ndarray, ...]:
    if len(np.unique(data.y)) < 2:
        raise ValueError(f"every row has the label {str(data.y[0])!r}: a classifier needs at least two classes")
    smallest = _smallest_class(data.y)
    if smallest < 3:
        counts = dict(zip(*np.unique(data.y, return_counts=True), strict=True))
        rare = min(counts, key=lambda k: counts[k])
        raise ValueError(f"class {rare!r} has only {smallest} rows: each class needs at least 3 (one each to "
                         f"train, calibrate and test on); gather more, or drop the class")
    # The row numbers ride along (they do not change the draw) to split the weights the same way.
    X_train, X_held, y_train, y_held, r_train, r_held = train_test_split(
        data.X, data.y, np.arange(len(data.y)), test_size=holdout, random_state=seed, stratify=data.y)
    X_cal, X_test, y_cal, y_test, r_cal, r_test = train_test_split(
        X_held, y_held, r_held, test_size=0.5, random_state=seed,
        stratify=y_held if _smallest_class(y_held) >= 2 else None)
    return X_train, X_cal, X_test, y_train, y_cal, y_test, r_train, r_cal, r_test


def train(
    data: Dataset, *, name: str, version: int, out_dir: Path, select: int | None = None,
    estimator: str = "auto", calibration: str = "auto", holdout: float = 0.4, seed: int = 0,
    use: list[str] | None = None, progress: Progress | None = None,
) -> Path:
    """Fit, calibrate and check a model; write `<name>-v<version>.skops` and its card beside it.

    The model uses every column, the `use` columns, or `select` columns chosen by forward selection; the
    card's contract is every column either way, so versions that use different columns take the same records.
    """
    say = progress or (lambda _step: None)
    if estimator == "seed" and np.isnan(data.X).any():
        column = data.feature_names[int(np.flatnonzero(np.isnan(data.X).any(axis=0))[0])]
        raise ValueError(f"--estimator seed cannot take missing values, and column {column!r} has some; "
                         f"choose another estimator (each of the others can)")
    X_train, X_cal, X_test, y_train, y_cal, y_test, *rows = _split(data, holdout, seed)
    w_train, w_cal, w_test = (None, None, None) if data.weight is None else (data.weight[r] for r in rows)
    chosen = list(range(data.X.shape[1]))
    if use and select is not None:
        raise ValueError("--use and --select both choose the columns: give one of them")
    if select is not None and select >= data.X.shape[1]:
        raise ValueError(f"--select {select}: the data has only {data.X.shape[1]} feature columns")
    if use:
        unknown = [name for name in use if name not in data.feature_names]
        if unknown:
            raise ValueError(f"--use {unknown[0]!r}: no such feature column (columns: {', '.join(data.feature_names)})")
        chosen = [data.feature_names.index(name) for name in use]
    elif select is not None and select < data.X.shape[1]:
        chosen = select_features(X_train, y_train, select, estimator, say)
    cv_scores: dict[str, float] = {}
    kind = estimator
    levels = data.levels(chosen)
    if estimator == "auto":
        kind, cv_scores = choose_estimator(X_train[:, chosen], y_train, seed, say, w_train, levels)
    say(f"fitting {kind} on {len(y_train)} rows")
    base = _single_threaded(_fit(clone(make_estimator(kind, seed, levels)), X_train[:, chosen], y_train, w_train))
    say(f"calibrating on {len(y_cal)} held-out rows")
    model, method, calibration_cv = calibrate(base, X_cal[:, chosen], y_cal, calibration, seed, w_cal)
    labels = [str(c) for c in model.classes_]
    features = [data.feature_names[i] for i in chosen]

    say(f"evaluating on {len(y_test)} other held-out rows")
    with np.errstate(all="ignore"):
        before, before_points = evaluate_probabilities(base.predict_proba(X_test[:, chosen]), y_test, labels)
        proba = model.predict_proba(X_test[:, chosen])
    after, after_points = evaluate_probabilities(proba, y_test, labels)
    predicted = np.asarray(labels)[proba.argmax(axis=1)]

    say("fitting the novelty guard")
    guard = novelty.fit(X_train[:, chosen], X_cal[:, chosen], features,
                        [data.categories.get(f, ()) if data.type_of(i) == "category" else ()
                         for f, i in zip(features, chosen, strict=True)])
    flagged_test = float(np.mean([bool(r) for r in guard.check(X_test[:, chosen])])) if len(y_test) else 0.0

    stem = f"{name}-v{version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / f"{stem}.skops"
    sio.dump({"format": 2, "model": model, "novelty": guard.arrays()}, artifact)

    def split_figures(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        pred = model.predict(X[:, chosen])
        return {"accuracy": float(accuracy_score(y, pred)), "n": int(len(y)),
                "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist()}

    rng = np.random.default_rng(seed)
    card = {
        "name": name,
        "version": version,
        "id": stem,
        "artifact": artifact.name,
        "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_source": data.source,
        "data_notes": data.notes,
        "estimator": f"{kind}: {describe(base)}",
        "estimator_choice": {"asked": estimator, "cv_accuracy": cv_scores} if cv_scores else {"asked": estimator},
        "feature_selection": f"SequentialFeatureSelector(n_features_to_select={select}, cv=5)"
        if len(chosen) < data.X.shape[1] and not use else ("columns given" if use else None),
        "all_features": data.feature_names,
        "features": features,
        "classes": labels,
        "accepts_missing": kind != "seed",
        "split": {"train": int(len(y_train)), "calibration": int(len(y_cal)), "test": int(len(y_test)),
                  "seed": seed},
        "train": split_figures(X_train, y_train),
        "test": split_figures(X_test, y_test),
        "calibration": {
            "method": method, "asked": calibration, "cv_log_loss": calibration_cv,
            "fitted_on": int(len(y_cal)), "evaluated_on": int(len(y_test)),
            "bins": RELIABILITY_BINS, "before": before, "after": after,
            "reliability": {"before": before_points, "after": after_points},
            # (confidence, predicted class, correct) of each test row: prior evidence for thresholds
            "holdout": [[round(float(c), 6), str(p), bool(p == t)]
                        for c, p, t in zip(proba.max(axis=1), predicted, y_test, strict=True)],
        },
        "novelty": guard.describe() | {"flagged_on_test": flagged_test},
        "contract": contract_from_columns(np.vstack([X_train, X_cal]), data.feature_names, data.source,
                                          nullable=np.isnan(data.X).any(axis=0) | (
                                              False if data.nullable is None else data.nullable),
                                          types=data.types, categories=data.categories),
        "class_distribution": {label: float(np.mean(y_train == label)) for label in labels},
        "feature_stats": {
            feature: feature_statistics(X_train[:, i], rng, SAMPLE_SIZE) if data.type_of(i) == "number"
            else category_statistics(X_train[:, i], data.categories.get(feature, ("false", "true")))
            for feature, i in zip(features, chosen, strict=True)
        },
    }
    if data.weight is not None:
        card["sample_weight"] = weighted_figures(proba, y_test, data.weight[rows[2]], labels) | {
            "train_cases": float(data.weight[rows[0]].sum()), "min": float(data.weight.min()),
            "max": float(data.weight.max())}
    card_path(artifact).write_text(json.dumps(card, indent=2) + "\n")
    return artifact


def category_statistics(codes: np.ndarray, categories: tuple[str, ...]) -> dict[str, Any]:
    """A category (or boolean: "false", "true") column's training distribution: rows per value, every value
    listed (0 for one seen only outside the training rows), for the monitoring's drift test; missing apart."""
    present = codes[~np.isnan(codes)].astype(int)
    counts = np.bincount(present, minlength=len(categories))
    return {"n": int(len(present)), "missing": int(len(codes) - len(present)),
            "counts": {c: int(n) for c, n in zip(categories, counts.tolist(), strict=True)}}


def weighted_figures(proba: np.ndarray, y: np.ndarray, weight: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Test figures with each row counted as the cases it stands for: estimates over the traffic the labels
    were sampled from, where the unweighted ones describe the labelled rows (mostly the cases people saw)."""
    predicted = np.asarray(labels)[proba.argmax(axis=1)]
    return {"test_accuracy": float(accuracy_score(y, predicted, sample_weight=weight)),
            "test_log_loss": float(log_loss(y, np.clip(proba, 1e-15, 1), labels=labels, sample_weight=weight)),
            "test_cases": float(weight.sum())}


def describe(model: Any) -> str:
    """The fitted estimator in one line, parameters that differ from scikit-learn's defaults included."""
    with np.printoptions(threshold=5):
        return " ".join(repr(model).split())


def next_version(out_dir: Path, name: str) -> int:
    """One more than the highest version of `name` already in the folder."""
    versions = [
        int(p.stem.rsplit("-v", 1)[1])
        for p in out_dir.glob(f"{name}-v*.skops")
        if p.stem.rsplit("-v", 1)[1].isdigit()
    ]
    return max(versions, default=0) + 1
