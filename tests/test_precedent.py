"""decider/precedent.py and the review API's `precedents` and `explanation`: the nearest cases a person decided
(checked against brute force), never the model's own decisions, and hidden wherever the model's view is."""

from __future__ import annotations

import numpy as np
import pytest

from decider import precedent
from decider.cases.service import get_case
from decider.review import insight, service
from helpers import AMBIGUOUS, SETOSA, api, review_headers, settings_for, submit

MODEL_DECIDED = [SETOSA, {"sepal length (cm)": 4.9, "petal width (cm)": 0.2},
                 {"sepal length (cm)": 5.1, "petal width (cm)": 0.3}]
QUEUED = [{"sepal length (cm)": 6.0 + i / 10, "petal width (cm)": 1.5 + i / 20} for i in range(5)]
# Shorter sepals than any iris in training: queued for a person however sure the model is (novelty).
ODD, QUERY = {"sepal length (cm)": 3.4, "petal width (cm)": 0.3}, {"sepal length (cm)": 3.5, "petal width (cm)": 0.2}


def brute_force(Z: np.ndarray, z: np.ndarray, k: int) -> list[int]:
    return np.argsort(np.linalg.norm(Z - z, axis=1), kind="stable")[:k].tolist()


def test_nearest_matches_brute_force_and_leaves_out_the_case_itself():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[10, 0, 1000, 0.1, 5], scale=[1, 2, 300, 0.01, 1], size=(3000, 5))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values count as the training mean
    center, scale = np.array([10, 0, 1000, 0.1, 5.0]), np.array([1, 2, 300, 0.01, 1.0])
    ids = np.arange(100, 3100)
    index = precedent.build(model_id="m", features=list("abcde"), ids=ids, X=X, center=center, scale=scale)
    Z = np.nan_to_num((X - center) / scale)
    for q in rng.normal(loc=[10, 0, 1000, 0.1, 5], scale=[1, 2, 300, 0.01, 1], size=(20, 5)):
        got = precedent.nearest(index, q, 5)
        assert [case_id for case_id, _ in got] == [int(ids[i]) for i in brute_force(Z, (q - center) / scale, 5)]
        assert [d for _, d in got] == pytest.approx(sorted(np.linalg.norm(Z - (q - center) / scale, axis=1))[:5],
                                                    rel=1e-5)
    first = precedent.nearest(index, X[7], 3)
    assert first[0] == (107, pytest.approx(0.0, abs=1e-5))
    assert 107 not in [case_id for case_id, _ in precedent.nearest(index, X[7], 3, exclude=[107])]
    empty = precedent.build(model_id="m", features=["a"], ids=[], X=np.empty((0, 1)), center=np.zeros(1),
                            scale=np.ones(1))
    assert precedent.nearest(empty, [1.0], 5) == []


def test_merging_new_decisions_matches_a_build_from_all_of_them():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3))
    center, scale = np.zeros(3), np.ones(3)
    old = precedent.build(model_id="m", features=list("abc"), ids=np.arange(400), X=X[:400], center=center,
                          scale=scale)
    moved = X[:400].copy()
    moved[10] = X[450]  # a case already indexed, read again (its row is replaced, not doubled)
    again = precedent.merged(old, [10, *range(400, 500)], np.vstack([X[450], X[400:]]), ("sig",))
    whole = precedent.build(model_id="m", features=list("abc"), ids=np.arange(500),
                            X=np.vstack([moved, X[400:]]), center=center, scale=scale)
    assert len(again) == 500 and again.signature == ("sig",)
    for q in rng.normal(size=(10, 3)):
        got, expected = precedent.nearest(again, q, 5), precedent.nearest(whole, q, 5)
        assert [i for i, _ in got] == [i for i, _ in expected]
        assert [d for _, d in got] == pytest.approx([d for _, d in expected])


def test_a_different_category_is_one_training_spread_away():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [1.0, 0.0]])  # column 1: codes of a 3-valued category
    index = precedent.build(model_id="m", features=["x", "plan"], ids=[1, 2, 3, 4], X=X, center=np.zeros(2),
                            scale=np.ones(2), levels={1: 3})
    got = dict(precedent.nearest(index, [0.0, 0.0], 4))
    assert got[1] == pytest.approx(0.0, abs=1e-6)
    # Codes 1 and 2 are equally far from code 0, and as far as one training spread of a number.
    assert [got[2], got[3], got[4]] == pytest.approx([1.0, 1.0, 1.0], rel=1e-6)


def post(client, who, path, **body):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/review{path}", json=body, headers=review_headers(client, who))


def decide(client, who, case_id, label):  # type: ignore[no-untyped-def]
    assert post(client, who, f"/cases/{case_id}/claim").status_code == 200
    assert post(client, who, f"/cases/{case_id}/resolve", label=label).status_code == 200


def test_precedents_are_the_nearest_cases_a_person_decided(tmp_path, db_url, monkeypatch):
    with api(settings_for(tmp_path, db_url, level="partial")) as (client, h):
        runtime = client.app.state.runtime
        auto = [submit(client, h, f) for f in MODEL_DECIDED]
        assert {c["decided_by"] for c in auto} == {"model"}
        people = {}
        for i, f in enumerate(QUEUED):
            case = submit(client, h, f)
            decide(client, "alice" if i % 2 else "bob", case["id"], "virginica" if i > 1 else "versicolor")
            people[case["id"]] = f
        odd = submit(client, h, ODD)
        assert odd["route"] == "queue" and odd["novelty"]
        decide(client, "bob", odd["id"], "setosa")
        people[odd["id"]] = ODD
        with runtime.engine.connect() as conn:
            query = get_case(conn=conn, case_id=submit(client, h, QUERY)["id"])
        fix = QUEUED[0]
        corrected = next(i for i, f in people.items() if f is fix)
        assert post(client, "root", f"/cases/{corrected}/correct", label="virginica", note="lab").status_code == 200

        index = precedent.load_index(runtime.engine, runtime.deployment.live)
        assert sorted(index.ids.tolist()) == sorted(people)  # the model's decisions are not precedents
        monkeypatch.setattr(precedent, "MIN_REBUILD_SECONDS", 0.0)
        insight.refresh_precedents(runtime)  # what the background tick does every server.reload_seconds
        got = insight.precedents(runtime, query)
        assert got is not None and len(got) == 5
        stats = runtime.deployment.live.card["feature_stats"]
        names = runtime.deployment.live.features
        center, scale = np.array([stats[n]["mean"] for n in names]), np.array([stats[n]["std"] for n in names])
        ids = list(people)
        Z = (np.array([[people[i][n] for n in names] for i in ids]) - center) / scale
        z = (np.array([QUERY[n] for n in names]) - center) / scale
        assert [p["id"] for p in got] == [ids[j] for j in brute_force(Z, z, 5)]
        assert got[0]["id"] == odd["id"] and (got[0]["decision"], got[0]["decided_by"]) == ("setosa", "bob")
        again = {p["id"]: p for p in insight.precedents(runtime, query) or []}
        assert (again[corrected]["decision"], again[corrected]["decided_by"]) == ("virginica", "root")

        # The API carries them on a case whose suggestion shows, the case itself left out.
        read = client.get(f"/api/v1/review/cases/{odd['id']}", headers=review_headers(client)).json()
        assert odd["id"] not in [p["id"] for p in read["precedents"]]
        assert read["explanation"]["suggested"] == "setosa" and read["explanation"]["method"] == "linear"
        shares = read["explanation"]["features"]
        assert {s["name"] for s in shares} == set(names)
        assert read["explanation"]["base"] + sum(s["contribution"] for s in shares) == pytest.approx(
            read["explanation"]["margin"])
        outside = next(s for s in shares if s["name"] == "sepal length (cm)")
        assert outside["outside"] and outside["training_min"] == stats["sepal length (cm)"]["min"]


def test_the_index_is_rebuilt_only_when_person_decisions_change(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.setattr(precedent, "MIN_REBUILD_SECONDS", 0.0)  # every look due at once
    monkeypatch.setattr(precedent, "REBUILD_FACTOR", 0.0)
    with api(settings_for(tmp_path, sqlite_url, level="assist")) as (client, h):
        runtime, live = client.app.state.runtime, client.app.state.runtime.deployment.live
        holder = precedent.Precedents()
        first = submit(client, h, AMBIGUOUS)
        assert holder.refresh(runtime.engine, live) is True and len(holder.index or []) == 0
        assert holder.refresh(runtime.engine, live) is False  # nothing decided since
        decide(client, "alice", first["id"], "versicolor")
        assert holder.refresh(runtime.engine, live) is True  # read since the last decision it saw, merged
        assert (holder.index.ids.tolist() if holder.index else None) == [first["id"]]
        assert holder.current(runtime.engine, live) is holder.index
        second = submit(client, h, QUEUED[0])
        decide(client, "bob", second["id"], "virginica")
        assert holder.refresh(runtime.engine, live) is True
        assert sorted(holder.index.ids.tolist() if holder.index else []) == [first["id"], second["id"]]
        # An undone decision leaves the precedents at once, though the index drops it only on a full build.
        with runtime.engine.begin() as conn:
            service.undo(conn=conn, case_id=second["id"], reviewer="bob", within_seconds=60, lease_seconds=60)
        with runtime.engine.connect() as conn:
            hits = precedent.nearest(holder.index, [6.0, 1.5], 5) if holder.index else []
            assert [p["id"] for p in precedent.details(conn, hits)] == [first["id"]]
        assert holder.refresh(runtime.engine, live) is True  # and the next look takes it out
        assert (holder.index.ids.tolist() if holder.index else None) == [first["id"]]


@pytest.mark.parametrize(("level", "automation", "features", "shown"), [
    ("assist", "", AMBIGUOUS, True),
    ("partial", "", AMBIGUOUS, True),
    ("shadow", "", AMBIGUOUS, False),
    ("partial", "audit_rate = 1.0", SETOSA, False),  # a blind audit of the model's decision
], ids=["assist", "partial", "shadow", "blind-audit"])
def test_the_api_hides_them_where_the_suggestion_is_hidden(tmp_path, sqlite_url, monkeypatch, level, automation,
                                                          features, shown):
    monkeypatch.setattr(precedent, "MIN_REBUILD_SECONDS", 0.0)
    with api(settings_for(tmp_path, sqlite_url, level=level, automation=automation)) as (client, h):
        earlier = submit(client, h, QUEUED[0] if not automation else AMBIGUOUS)
        decide(client, "bob", earlier["id"], "versicolor")
        insight.refresh_precedents(client.app.state.runtime)
        case = submit(client, h, features)
        claimed = post(client, "alice", f"/cases/{case['id']}/claim").json()
        read = client.get(f"/api/v1/review/cases/{case['id']}", headers=review_headers(client)).json()
        for body in (claimed, read):
            assert (body["prediction"] is not None) is shown
            if shown:
                assert body["explanation"]["model_version"] == "iris-v1"
                assert [p["id"] for p in body["precedents"]] == [earlier["id"]]
            else:
                assert body["explanation"] is None and body["precedents"] is None
