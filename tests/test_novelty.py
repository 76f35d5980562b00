"""Never decide the unknown alone: inputs out of the training range, or unlike it in combination only, go to a
person at every level where the model decides, with the reason; `novelty = "allow"` lets the model decide."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.datasets import make_classification

from decider import novelty
from decider.config import load_settings
from decider.policy import Level, Policy, loosenings, route
from helpers import SETOSA, api, review_headers, submit, write_config
from review_helpers import login

FAR = {"sepal length (cm)": 5e6, "petal width (cm)": 0.2}  # a million times the training maximum
# Each value within its training range (sepal 4.3-7.9 cm, petal width 0.1-2.5 cm), but no iris has a long
# sepal with the thinnest petal: the bundled model says setosa at confidence ~1.0.
UNUSUAL = {"sepal length (cm)": 7.9, "petal width (cm)": 0.1}


def guard_on(seed: int) -> tuple[novelty.Guard, np.ndarray, np.ndarray]:
    """A guard fitted on correlated data (4 informative columns, 4 linear combinations of them), with
    fresh rows drawn the same way and rows whose columns are drawn independently from the training marginals."""
    X, _ = make_classification(6000, 10, n_informative=4, n_redundant=4, random_state=seed)
    guard = novelty.fit(X[:2000], X[2000:2600], [f"x{i}" for i in range(10)])
    rng = np.random.default_rng(seed)
    shuffled = np.column_stack([rng.choice(X[:2000, j], 1000) for j in range(10)])
    return guard, X[2600:], shuffled


def flagged(guard: novelty.Guard, X: np.ndarray) -> float:
    return float(np.mean([bool(r) for r in guard.check(X)]))


def test_about_one_in_a_hundred_ordinary_inputs_is_flagged_and_unseen_combinations_are():
    """The limit is the conformal 99% quantile of held-out distances: over ten data sets, inputs drawn like
    the training data are flagged about 1% of the time, and rows that break the columns' relations nearly
    always, though each of their values is within its range."""
    rates, caught = [], []
    for seed in range(10):
        guard, fresh, shuffled = guard_on(seed)
        rates.append(flagged(guard, fresh))
        reasons = guard.check(shuffled)
        caught.append(np.mean([any(r["kind"] == "combination" for r in rs) for rs in reasons]))
    assert 0.005 <= np.mean(rates) <= 0.015, rates
    assert min(caught) > 0.9, caught


def test_reasons_name_the_value_and_the_training_range():
    guard, fresh, _ = guard_on(0)
    row = fresh[0].copy()
    row[3] = 1e300
    [reasons] = guard.check([row])
    assert [r["kind"] for r in reasons] == ["range"] and reasons[0]["feature"] == "x3"
    lo, hi = guard.minimum[3], guard.maximum[3]
    assert reasons[0]["message"] == f"x3 = 1e+300, trained on {lo:.4g}–{hi:.4g}"
    missing = fresh[1].copy()
    missing[2] = np.nan  # a missing value is not a range problem; the distance uses the training median
    assert guard.check([missing]) == [[]] or guard.check([missing])[0][0]["kind"] == "combination"


def test_a_novel_input_is_queued_where_the_model_would_decide_it():
    policy = Policy(level=Level.FULL)
    assert route(policy, case_key="k", prediction="a", confidence=1.0, novel=True).route == "queue"
    assert route(policy, case_key="k", prediction="a", confidence=1.0, novel=True).held_as_novel
    assert route(Policy(level=Level.FULL, novelty="allow"), case_key="k", prediction="a", confidence=1.0,
                 novel=True).route == "auto"
    assert route(Policy(level=Level.PARTIAL), case_key="k", prediction="a", confidence=0.95).route == "auto"
    assert loosenings(Policy(level=Level.PARTIAL), Policy(level=Level.PARTIAL, novelty="allow")) == [
        "novelty queue -> allow"]


@pytest.mark.parametrize("level", ["partial", "full"])
def test_far_and_unusual_cases_go_to_a_person_with_the_reason(tmp_path, db_url, level):
    with api(load_settings(write_config(tmp_path, db_url, level=level))) as (client, h):
        ordinary = submit(client, h, SETOSA)
        assert ordinary["route"] == "auto" and ordinary["novelty"] == []
        far = submit(client, h, FAR)
        assert far["route"] == "queue" and far["status"] == "pending" and far["decision"] is None
        assert far["novelty"] == [{"kind": "range", "feature": "sepal length (cm)",
                                   "message": "sepal length (cm) = 5e+06, trained on 4.3–7.9"}]
        unusual = submit(client, h, UNUSUAL)
        assert unusual["confidence"] > 0.99 and unusual["route"] == "queue"
        assert [r["kind"] for r in unusual["novelty"]] == ["combination"]
        assert "each value is within its training range" in unusual["novelty"][0]["message"]

        metrics = client.get("/metrics").text
        assert re.search(r'decider_novel_cases_total\{kind="range",route="queue"\} [1-9]', metrics)

        login(client, "alice")
        page = client.get(f"/review/cases/{far['id']}").text
        assert "The model would not decide this case alone" in page and "trained on 4.3–7.9" in page
        assert "5e+06" in page
        history = client.get(f"/api/v1/review/cases/{far['id']}",
                             headers=review_headers(client, "alice")).json()["history"]
        [scored] = [e for e in history if e["kind"] == "scored"]
        assert scored["detail"]["novelty"] == ["sepal length (cm) = 5e+06, trained on 4.3–7.9"]


def test_novelty_allow_lets_the_model_decide_and_still_says_why(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url, level="full", automation='novelty = "allow"')
    with api(load_settings(config)) as (client, h):
        far, unusual = submit(client, h, FAR), submit(client, h, UNUSUAL)
        assert far["route"] == unusual["route"] == "auto"
        assert far["novelty"][0]["kind"] == "range" and unusual["novelty"][0]["kind"] == "combination"
        figures = client.get("/api/v1/monitoring", headers=review_headers(client, "root")).json()["novelty"]
        assert figures["novel"] == 2 and figures["auto"] == 2 and figures["auto_flag"]


def test_extreme_values_are_stored_and_shown_sanely(tmp_path, sqlite_url):
    with api(load_settings(write_config(tmp_path, sqlite_url))) as (client, h):
        huge = submit(client, h, {"sepal length (cm)": 1.7e308, "petal width (cm)": -1.7e308})
        assert huge["route"] == "queue" and {r["feature"] for r in huge["novelty"] if r["kind"] == "range"} == {
            "sepal length (cm)", "petal width (cm)"}
        assert huge["novelty"][-1]["kind"] == "unscorable"  # the model overflows: a case for a person, not a 500
        stored = client.get(f"/api/v1/cases/{huge['id']}", headers=h).json()
        assert stored["novelty"] == huge["novelty"]
        login(client, "root")
        pages = [client.get(f"/review/cases/{huge['id']}"), client.get("/monitoring"), client.get("/review")]
        for page in pages:
            assert page.status_code == 200
            assert not re.search(r"\d{20}", page.text)
        assert "1.7e+308" in pages[0].text
        assert client.get("/api/v1/monitoring", headers=review_headers(client, "root")).status_code == 200


def reasons_one_by_one(guard: novelty.Guard, X: np.ndarray, records: list[dict]) -> list[list[dict]]:
    """What Guard.check must say of each row, worked out row by row and feature by feature."""
    out = []
    d2 = guard.distances(X)
    for i, row in enumerate(X):
        reasons = []
        for j, name in enumerate(guard.features):
            kinds = guard.categories[j] if guard.categories else ()
            if kinds and not np.isnan(row[j]) and not 0 <= row[j] < len(kinds):  # NaN: missing
                said = f"{name} = {records[i][name]!r}" if records[i].get(name) is not None else f"{name}: a value"
                reasons.append({"kind": "category", "feature": name, "message": f"{said}, not seen in training "
                                f"(one of: {novelty.listed(kinds)})"})
            elif not kinds and (row[j] < guard.low[j] or row[j] > guard.high[j]):
                reasons.append({"kind": "range", "feature": name, "message": f"{name} = {novelty.num(row[j])}, "
                                f"trained on {novelty.num(guard.minimum[j])}–{novelty.num(guard.maximum[j])}"})
        if not reasons and d2 is not None and not d2[i] <= guard.limit:
            limit = novelty.num(np.sqrt(guard.limit))
            reasons.append({"kind": "combination", "feature": None, "message": "each value is within its training "
                            f"range, but not the combination: distance {novelty.num(np.sqrt(d2[i]))} from the "
                            f"training data, where 99% of held-out rows are within {limit}"})
        out.append(reasons)
    return out


def test_a_batch_is_checked_as_each_of_its_rows_would_be():
    # Guard.check finds the unusual cells of a whole batch in numpy and words them in one loop: each row must get
    # the reasons, in the order of its features, that it would get on its own.
    rng = np.random.default_rng(1)
    X, _ = make_classification(3000, 5, n_informative=3, n_redundant=1, random_state=1)
    X[:, 4] = rng.integers(0, 3, len(X))  # a category column, coded 0-2
    guard = novelty.fit(X[:2000], X[2000:2500], [f"x{i}" for i in range(5)], [(), (), (), (), ("a", "b", "c")])
    batch = X[2500:].copy()
    batch[rng.random(batch.shape) < 0.1] *= 8  # values past their range, several in some rows
    batch[rng.random(batch.shape) < 0.05] = np.nan  # missing: never a range problem
    batch[rng.random(len(batch)) < 0.1, 4] = -1  # a category value never seen in training
    records = [{"x4": "purple"} if row[4] == -1 else {} for row in batch]
    got = guard.check(batch, records)
    assert got == reasons_one_by_one(guard, batch, records)
    kinds = {r["kind"] for reasons in got for r in reasons}
    assert kinds == {"range", "category", "combination"} and sum(map(bool, got)) < len(batch)
    assert any(len([r for r in reasons if r["kind"] == "range"]) > 1 for reasons in got)
