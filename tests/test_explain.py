"""decider/explain.py: exact shares for linear models, a sensible Shapley ranking for the others, both adding up
to the model's own margin."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler
from threadpoolctl import threadpool_limits

from decider import explain
from decider.registry.artifacts import load
from decider.registry.training import Dataset, train


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """Boosting's OpenMP threads spin on a busy 2-core machine (one predict call took 140 ms): one thread."""
    with threadpool_limits(1):
        yield


def data(n_classes: int = 3, n_features: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    X, y = make_classification(n_samples=800, n_features=n_features, n_informative=4, n_redundant=2,
                               n_classes=n_classes, random_state=seed)
    return X, np.asarray(["no", "yes", "maybe"])[y], [f"f{j}" for j in range(n_features)]


def card_background(X: np.ndarray, names: list[str]) -> np.ndarray:
    stats = {n: {"sample": sorted(X[:400, j].tolist())} for j, n in enumerate(names)}
    return explain.background_from_stats(names, stats, seed=1)


def margin_of(model, x: np.ndarray, a: str, b: str) -> float:  # type: ignore[no-untyped-def]
    scores = model.decision_function(x[None])[0]
    classes = [str(c) for c in model.classes_]
    if np.ndim(scores) == 0:
        scores = np.array([0.0, scores])
    return float(scores[classes.index(a)] - scores[classes.index(b)])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_shares_are_exact_and_add_up_to_the_decision_function_margin(n_classes):
    X, y, names = data(n_classes)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    labels = [str(c) for c in model.classes_]
    background = card_background(X, names)
    for x in X[500:520]:
        found = explain.explain(model, labels, names, x, background)
        assert (found.method, found.exact) == ("linear", True)
        total = found.base + sum(s.contribution for s in found.shares)
        expected = margin_of(model, x, found.suggested, found.runner_up)
        assert found.margin == pytest.approx(expected, abs=1e-9)
        assert total == pytest.approx(expected, abs=1e-9)
        assert expected >= 0  # the suggested class scores above the runner-up
        # Each share is the closed form w_j (x_j - mean of the background) / scale_j.
        lr, scaler = model[-1], model[0]
        coef = lr.coef_ if n_classes > 2 else np.vstack([np.zeros_like(lr.coef_[0]), lr.coef_[0]])
        a, b = labels.index(found.suggested), labels.index(found.runner_up)
        closed = (coef[a] - coef[b]) * (x - background.mean(axis=0)) / scaler.scale_
        by_name = {s.feature: s.contribution for s in found.shares}
        assert [by_name[n] for n in names] == pytest.approx(closed.tolist(), abs=1e-9)
        assert [abs(s.contribution) for s in found.shares] == pytest.approx(sorted(np.abs(closed), reverse=True))


def test_one_hot_columns_are_gathered_back_onto_their_field():
    rng = np.random.default_rng(3)
    code = rng.integers(0, 4, 600).astype(float)  # a category field, held as codes as scoring holds it
    amount = rng.normal(size=600)
    y = np.where(amount + (code == 2) * 1.5 - (code == 0) > 0.3, "yes", "no")
    X = np.column_stack([amount, code])
    encode = ColumnTransformer([("num", StandardScaler(), [0]),
                                ("cat", OneHotEncoder(handle_unknown="ignore"), [1])])
    model = make_pipeline(encode, LogisticRegression()).fit(X, y)
    names = ["amount", "plan"]
    background = card_background(X, names)
    for x in X[:20]:
        found = explain.explain(model, ["no", "yes"], names, x, background)
        assert found.method == "linear" and len(found.shares) == 2  # two fields, not five columns
        total = found.base + sum(s.contribution for s in found.shares)
        assert total == pytest.approx(margin_of(model, x, found.suggested, found.runner_up), abs=1e-9)


def test_inside_decider_calibration_the_linear_model_is_explained_exactly(tmp_path):
    X, y, names = data(3)
    train(Dataset(X, y, names, "make_classification"), name="mc", version=1, out_dir=tmp_path,
          estimator="logistic", calibration="temperature", seed=0)
    model = load(tmp_path, "mc-v1")
    inner = explain.unwrapped(model.estimator)
    background = explain.background_from_stats(names, model.card["feature_stats"], fill=model.guard.fill)
    for x in X[:10]:
        found = explain.explain(model.estimator, model.labels, names, x, background)
        assert found.method == "linear"
        # The suggestion and runner-up are the calibrated model's; the margin the linear model's own.
        p = model.predict_proba(x[None])[0]
        assert found.suggested == model.labels[int(np.argmax(p))]
        assert found.base + sum(s.contribution for s in found.shares) == pytest.approx(
            margin_of(inner, x, found.suggested, found.runner_up), abs=1e-9)


def nonlinear_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """y depends on f0 and f1 only (an interaction no linear model draws); f2 is noise the target ignores."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, 3))
    y = np.where(X[:, 0] * X[:, 1] > 0, "same", "opposite")
    return X, y


@pytest.mark.parametrize("estimator", [RandomForestClassifier(n_estimators=60, random_state=0),
                                       HistGradientBoostingClassifier(random_state=0)], ids=["forest", "boosting"])
def test_a_feature_the_target_ignores_ranks_last(estimator):
    X, y = nonlinear_data()
    model = estimator.fit(X[:2000], y[:2000])
    names = ["f0", "f1", "noise"]
    labels = [str(c) for c in model.classes_]
    background = card_background(X, names)
    mean_abs = np.zeros(3)
    last = 0
    for i, x in enumerate(X[2000:2040]):
        found = explain.explain(model, labels, names, x, background, seed=i)
        assert (found.method, found.exact) == ("shapley", False)
        p = model.predict_proba(x[None])[0]
        # The total is exact even where the split is estimated.
        assert found.base + sum(s.contribution for s in found.shares) == pytest.approx(
            p[labels.index(found.suggested)] - p[labels.index(found.runner_up)], abs=1e-9)
        by_name = {s.feature: s.contribution for s in found.shares}
        mean_abs += np.abs([by_name[n] for n in names])
        last += found.shares[-1].feature == "noise"
    assert mean_abs[2] < 0.25 * min(mean_abs[0], mean_abs[1]), mean_abs
    assert last >= 30, f"noise ranked last on only {last} of 40 cases"


def test_a_model_that_mixes_columns_is_not_called_linear():
    X, y, names = data(2, 6)
    model = make_pipeline(PolynomialFeatures(2), StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    assert explain.linear_model(model) is None
    found = explain.explain(model, [str(c) for c in model.classes_], names, X[0], card_background(X, names))
    assert found.method == "shapley"


def test_same_case_same_explanation_and_extremes_are_refused():
    X, y = nonlinear_data(1)
    model = HistGradientBoostingClassifier(random_state=0).fit(X, y)
    names, labels = ["f0", "f1", "noise"], [str(c) for c in model.classes_]
    background = card_background(X, names)
    first = explain.explain(model, labels, names, X[0], background, seed=7)
    assert explain.explain(model, labels, names, X[0], background, seed=7) == first
    linear = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="not finite"):
        explain.explain(linear, labels, names, np.array([1e308, -1e308, 1e308]), background)


def test_background_comes_from_the_cards_samples_or_the_guards_fill():
    stats = {"a": {"sample": [1.0, 2.0, 3.0]}, "b": {"sample": []}}
    rows = explain.background_from_stats(["a", "b", "c"], stats, rows=50, fill=[0.0, 5.0, 7.0])
    assert set(rows[:, 0]) <= {1.0, 2.0, 3.0} and len(set(rows[:, 0])) == 3
    assert (rows[:, 1] == 5.0).all() and (rows[:, 2] == 7.0).all()
