"""POST /api/v1/batches: each case its own result, idempotent keys, the routing of single cases, limits."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pydantic_core
import pytest
from sqlalchemy import func, select

from decider.cases.batch import case_out
from decider.cases.service import Submission, score_batch, store_batch
from decider.cases.tables import Case, ShadowPrediction
from decider.http import json_body
from helpers import AMBIGUOUS, SETOSA, api, model_versions, settings_for, submit

BATCH = "/api/v1/batches"
WIDTH = "petal width (cm)"
ODD = {"sepal length (cm)": 50.0, "petal width (cm)": 0.2}  # out of the training range: novel


def count(client, table=Case) -> int:  # type: ignore[no-untyped-def]
    with client.app.state.runtime.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def stored_keys(client) -> set[str]:  # type: ignore[no-untyped-def]
    with client.app.state.runtime.engine.connect() as conn:
        return set(conn.execute(select(Case.key)).scalars())


def post(client, headers, cases):  # type: ignore[no-untyped-def]
    response = client.post(BATCH, json={"cases": cases}, headers=headers)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(cases)))
    return results


def test_each_case_gets_its_own_result_and_a_bad_one_stores_nothing(tmp_path, db_url):
    cases = [
        {"features": SETOSA, "key": "good-1"},
        {"features": {**SETOSA, "colour": 1.0}, "key": "bad-unknown"},
        {"features": {**SETOSA, WIDTH: None}, "key": "bad-null"},
        {"features": {**SETOSA, WIDTH: "0.2"}, "key": "bad-string"},
        {"features": {**SETOSA, WIDTH: True}, "key": "bad-bool"},
        {"features": {"sepal length (cm)": 5.0}, "key": "bad-missing"},
        {"features": SETOSA, "key": ""},
        {"features": SETOSA, "extra": 1},
        "not a case",
        {"features": AMBIGUOUS, "key": "good-2"},
    ]
    with api(settings_for(tmp_path, db_url)) as (client, h):
        results = post(client, h, cases)
        statuses = [r["status"] for r in results]
        assert statuses == [201, 422, 422, 422, 422, 422, 422, 422, 422, 201]
        fields = [r["error"]["field"] for r in results[1:9]]
        assert fields == ["cases[1].features.colour", f"cases[2].features.{WIDTH}", f"cases[3].features.{WIDTH}",
                          f"cases[4].features.{WIDTH}", f"cases[5].features.{WIDTH}", "cases[6].key",
                          "cases[7].extra", "cases[8]"]
        assert all(r["error"]["detail"].startswith(r["error"]["field"]) for r in results[1:9])
        assert all(r["case"] is None for r in results[1:9])
        assert results[0]["case"]["decision"] == "setosa" and results[9]["case"]["route"] == "queue"
        assert results[0]["error"] is None
        assert count(client) == 2 and stored_keys(client) == {"good-1", "good-2"}


def test_keys_are_idempotent_per_case(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url)) as (client, h):
        single = submit(client, h, SETOSA, key="k-single")
        first = post(client, h, [{"features": SETOSA, "key": "k-1"}, {"features": AMBIGUOUS, "key": "k-2"},
                                 {"features": SETOSA, "key": "k-single"}, {"features": AMBIGUOUS, "key": "k-single"}])
        assert [r["status"] for r in first] == [201, 201, 200, 409]
        assert first[2]["case"]["id"] == single["id"]
        assert first[3]["error"]["field"] == "cases[3].key" and str(single["id"]) in first[3]["error"]["detail"]
        again = post(client, h, [{"features": SETOSA, "key": "k-1"}, {"features": AMBIGUOUS, "key": "k-2"}])
        assert [r["status"] for r in again] == [200, 200]
        assert [r["case"] for r in again] == [r["case"] for r in first[:2]]
        # The same key twice in one batch: one case; with other features the second is a conflict.
        twice = post(client, h, [{"features": SETOSA, "key": "k-3"}, {"features": SETOSA, "key": "k-3"},
                                 {"features": AMBIGUOUS, "key": "k-3"}])
        assert [r["status"] for r in twice] == [201, 200, 409]
        assert twice[0]["case"]["id"] == twice[1]["case"]["id"]
        # A single submission of a key the batch stored finds it.
        assert client.post("/api/v1/cases", json={"features": SETOSA, "key": "k-1"}, headers=h).status_code == 200
        assert count(client) == 4


def test_a_key_another_writer_is_storing_is_returned_once_it_commits(tmp_path, db_url):
    # Two processes (here two connections) store the same key at once: the second waits for the first's
    # commit, then finds its case, neither an error nor a second case.
    with api(settings_for(tmp_path, db_url)) as (client, h):
        runtime = client.app.state.runtime
        subs = [Submission("tests", SETOSA, "raced"), Submission("tests", AMBIGUOUS, "other-1")]
        got: dict[str, list] = {}
        with runtime.engine.begin() as first:
            mine = store_batch(first, score_batch(runtime, subs[:1]))

            def second() -> None:
                with runtime.engine.begin() as conn:
                    got["second"] = store_batch(conn, score_batch(runtime, subs))

            racer = threading.Thread(target=second)
            racer.start()
            racer.join(1.0)
            assert racer.is_alive()  # waiting on the first writer's uncommitted key
        racer.join(30)
        (row, created), (other, other_created) = got["second"]
        assert (created, other_created) == (False, True)
        assert row["id"] == mine[0][0]["id"] and row["key"] == "raced"
        assert count(client) == 2


COMPARED = ("route", "status", "decision", "effective_level", "threshold", "model_version", "model_role",
            "audit", "review_status", "show_suggestion", "novelty", "prediction", "probabilities", "confidence")


def approx(value):  # type: ignore[no-untyped-def]
    """One row scored alone and in a batch may differ in the last bits of a probability (BLAS)."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-15)
    if isinstance(value, dict):
        return {k: approx(v) for k, v in value.items()}
    return value


def stored(client) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    with client.app.state.runtime.engine.connect() as conn:
        rows = conn.execute(select(Case)).mappings().all()
    return {r["key"]: tuple(approx(r[c]) for c in COMPARED) for r in rows}


def test_batch_cases_are_routed_as_single_cases(tmp_path, db_url):
    # Rollout, canary, audits (every auto decision audited, so the draw does not matter), novelty and
    # per-class thresholds, all drawn from the keys: the same inputs must land the same way on both paths.
    models = model_versions(tmp_path)
    kw = {"models_dir": models, "models": 'candidate = "iris-v2"\ncanary_percent = 50',
          "automation": "audit_rate = 1.0\nrollout_percent = 60\nclass_thresholds = { versicolor = 0.6 }"}
    inputs = [{"features": f, "key": f"case-{i}-{j}"} for i, f in enumerate((SETOSA, AMBIGUOUS, ODD))
              for j in range(12)]
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    with api(settings_for(tmp_path / "one", f"sqlite:///{tmp_path / 'one' / 'd.db'}", **kw)) as (client, h):
        singles = [submit(client, h, c["features"], key=c["key"]) for c in inputs]
        by_single = stored(client)
    with api(settings_for(tmp_path / "many", db_url, **kw)) as (client, h):
        results = post(client, h, inputs)
        by_batch = stored(client)
    assert {r["status"] for r in results} == {201}
    for key, single in by_single.items():
        assert dict(zip(COMPARED, by_batch[key], strict=True)) == dict(zip(COMPARED, single, strict=True)), key
    assert {v[COMPARED.index("model_role")] for v in by_batch.values()} == {"live", "candidate"}
    assert {v[COMPARED.index("effective_level")] for v in by_batch.values()} == {"partial", "assist"}
    assert any(v[COMPARED.index("audit")] for v in by_batch.values())
    assert any(v[COMPARED.index("novelty")] for v in by_batch.values())
    drop = ("id", "created_at", "decided_at")
    assert [{k: approx(v) for k, v in r["case"].items() if k not in drop} for r in results] == [
        {k: v for k, v in s.items() if k not in drop} for s in singles]


def test_a_full_batch_answers_each_case_with_its_own_stored_row(tmp_path, db_url):
    # 700 cases: more than one INSERT statement's worth on SQLite (bulk.MAX_PARAMS), so ids cross chunks.
    cases = [{"features": {"sepal length (cm)": 4.5 + (i % 30) / 10, WIDTH: (i % 25) / 10}, "key": f"full-{i}"}
             for i in range(699)] + [{"features": AMBIGUOUS}]
    with api(settings_for(tmp_path, db_url)) as (client, h):
        submit(client, h, SETOSA)  # ids do not start at 1
        results = post(client, h, cases)
        assert {r["status"] for r in results} == {201}
        with client.app.state.runtime.engine.connect() as conn:
            rows = {r["id"]: r for r in conn.execute(select(Case)).mappings()}
        assert len({r["case"]["id"] for r in results}) == 700
        for case, result in zip(cases, results, strict=True):
            row = rows[result["case"]["id"]]
            assert row["features"] == case["features"] and row["key"] == result["case"]["key"]
            assert case.get("key", row["key"]) == row["key"]
            assert (row["route"], row["prediction"]) == (result["case"]["route"], result["case"]["prediction"])
            assert row["review_label"] is None and row["claimed_by"] is None and row["outcome"] is None
            # Each value stored as its column's type, as the ORM would store it (bulk.py converts them itself).
            assert row["probabilities"] == result["case"]["probabilities"]
            assert row["confidence"] == result["case"]["confidence"]
            assert row["novelty"] == result["case"]["novelty"]
            assert isinstance(row["show_suggestion"], bool) and isinstance(row["audit"], bool)
            assert row["created_at"].tzinfo is not None
            assert row["created_at"] == datetime.fromisoformat(result["case"]["created_at"])
            assert (row["decided_at"] is None) == (row["route"] == "queue")


def test_new_and_known_keys_mixed_in_a_full_batch_each_get_their_own_row(tmp_path, db_url):
    # Chunks where some keys are new and some stored before (read back, not inserted): the ids of the new rows
    # on SQLite come from the rowid rule (bulk.insert_new), so each answer must still name its own row.
    def case(i: int) -> dict:
        return {"features": {"sepal length (cm)": 4.5 + (i % 30) / 10, WIDTH: (i % 25) / 10}, "key": f"mix-{i}"}

    with api(settings_for(tmp_path, db_url)) as (client, h):
        before = post(client, h, [case(i) for i in range(0, 1000, 3)])  # every third key, stored first
        results = post(client, h, [case(i) for i in range(499, -1, -1)] + [case(i) for i in range(500, 1000)])
        with client.app.state.runtime.engine.connect() as conn:
            rows = {r["id"]: r for r in conn.execute(select(Case)).mappings()}
    known = {r["case"]["key"]: r["case"]["id"] for r in before}
    statuses = [r["status"] for r in results]
    assert (statuses.count(200), statuses.count(201)) == (len(known), 1000 - len(known))
    assert len({r["case"]["id"] for r in results}) == 1000 == len(rows)
    for result in results:
        row = rows[result["case"]["id"]]
        assert row["key"] == result["case"]["key"]
        assert row["features"] == case(int(row["key"].split("-")[1]))["features"]
        assert (result["status"] == 200) == (row["key"] in known)
        assert row["id"] == known.get(row["key"], row["id"])


def test_two_writers_at_once_each_get_the_ids_of_their_own_rows(tmp_path, db_url):
    # Two writers (as two workers) storing batches at the same time, repeatedly: each returned id must be the
    # row of its own key, whichever writer's INSERT took the write lock first (bulk.insert_new's rowid rule).
    with api(settings_for(tmp_path, db_url)) as (client, _):
        runtime = client.app.state.runtime
        answers: list[tuple[str, int]] = []
        failures: list[BaseException] = []

        def writer(name: str) -> None:
            try:
                for b in range(15):
                    subs = [Submission("tests", {"sepal length (cm)": 4.5 + i % 30 / 10, WIDTH: i % 25 / 10},
                                       f"{name}-{b}-{i}") for i in range(400)]
                    with runtime.engine.begin() as conn:
                        stored = store_batch(conn, score_batch(runtime, subs))
                    answers.extend((row["key"], row["id"]) for row, _ in stored)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures
        with runtime.engine.connect() as conn:
            ids = {key: case_id for case_id, key in conn.execute(select(Case.id, Case.key))}
    assert len(answers) == 2 * 15 * 400 == len(ids)
    assert all(ids[key] == case_id for key, case_id in answers)


@pytest.mark.parametrize("level", ["partial", "shadow"])
def test_answers_are_the_bytes_pydantic_would_write(tmp_path, db_url, level):
    # Case answers are encoded by orjson (http.json_body) for speed; clients parse what pydantic wrote before:
    # UTC times ending in Z, floats in their shortest form, text as sent. Rows as stored and as read back.
    cases = [{"features": f, "key": f"b-{i}"} for i, f in enumerate((SETOSA, AMBIGUOUS, ODD))]
    with api(settings_for(tmp_path, db_url, level=level)) as (client, h):
        answer = client.post(BATCH, json={"cases": cases}, headers=h)
        with client.app.state.runtime.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(Case).order_by(Case.id)).mappings()]
    assert answer.content == pydantic_core.to_json(answer.json())
    assert [r["status"] for r in answer.json()["results"]] == [201, 201, 201]
    shown = [case_out(row) for row in rows]
    assert any(s["novelty"] for s in shown) == (level == "partial")
    assert any(s["decided_at"] for s in shown) == (level == "partial")  # a time of each kind where there is one
    for case in shown:
        assert json_body(case) == pydantic_core.to_json(case)
        assert json_body(case).endswith(b'Z"}') and b"+00:00" not in json_body(case)


def test_shadow_models_score_batch_cases(tmp_path, sqlite_url):
    models = model_versions(tmp_path)
    settings = settings_for(tmp_path, sqlite_url, models_dir=models, models='shadow = ["iris-v2"]')
    with api(settings) as (client, h):
        post(client, h, [{"features": f} for f in (SETOSA, AMBIGUOUS, SETOSA)])
        deadline = time.monotonic() + 20
        while count(client, ShadowPrediction) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count(client, ShadowPrediction) == 3


def cases_metric(client) -> float:  # type: ignore[no-untyped-def]
    text = client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("decider_cases_total"))


def test_created_cases_are_counted_in_metrics(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        before = cases_metric(client)
        post(client, h, [{"features": SETOSA, "key": "m-1"}, {"features": AMBIGUOUS, "key": "m-2"}, {"features": {}}])
        post(client, h, [{"features": SETOSA, "key": "m-1"}])  # already stored: not counted again
        assert cases_metric(client) == before + 2


@pytest.mark.parametrize(("body", "status", "field"), [
    (b"{not json", 422, "body"),
    (b"[]", 422, "body"),
    (b'{"cases": {"features": {}}}', 422, "cases"),
    (b"{}", 422, "cases"),
    (b'{"cases": [], "more": 1}', 422, "more"),
    (b'{"cases": [' + b",".join([b'{"features": {}}'] * 4) + b"]}", 413, "cases"),
])
def test_whole_body_errors_name_the_field_and_store_nothing(tmp_path, db_url, body, status, field):
    settings = settings_for(tmp_path, db_url, extra="[server]\nbatch_max_cases = 3")
    with api(settings) as (client, h):
        response = client.post(BATCH, content=body, headers={**h, "content-type": "application/json"})
        assert (response.status_code, response.json()["field"]) == (status, field)
        assert response.json()["detail"].startswith(field)
        assert count(client) == 0


def test_limits(tmp_path, sqlite_url):
    extra = "[server]\nmax_body_bytes = 1024\nbatch_max_cases = 100\nbatch_max_body_bytes = 20000"
    with api(settings_for(tmp_path, sqlite_url, extra=extra)) as (client, h):
        as_text = client.post(BATCH, content=b'{"cases": []}', headers={**h, "content-type": "text/plain"})
        assert as_text.status_code == 422 and as_text.json()["field"] == "body"
        assert client.post(BATCH, json={"cases": []}).status_code == 401
        assert post(client, h, []) == []
        # A full batch is far over max_body_bytes (sized for one case) and within batch_max_body_bytes.
        full = post(client, h, [{"features": SETOSA, "key": f"f-{i}"} for i in range(100)])
        assert {r["status"] for r in full} == {201}
        big = client.post(BATCH, json={"cases": [{"features": SETOSA, "key": "k" * 190 + str(i)} for i in range(99)]},
                          headers=h)
        assert big.status_code == 413 and big.json()["field"] == "body"
        assert count(client) == 100


def test_openapi_documents_the_batch(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        spec = client.get("/openapi.json").json()
        op = spec["paths"][BATCH]["post"]
        # Each item is left open: a bad one is answered in its result, not by refusing the request (schemathesis
        # holds the schema to that), and its description points at CaseIn.
        items = op["requestBody"]["content"]["application/json"]["schema"]["properties"]["cases"]["items"]
        assert "type" not in items and "CaseIn" in items["description"]
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/BatchOut"}
        assert {"401", "413", "422"} <= set(op["responses"])


# JSON tokens, some of which CaseIn refuses: what the quick first pass (schemas.QuickBatch) must agree with.
VALUES = ["0", "-0.0", "1", "1.5", "-2e-300", "1e308", "1e309", "-1e309", "1" + "0" * 400, "true", "false",
          "null", '""', '"x"', '"1.5"', '"true"', '"null"', '"é"', f'"{"a" * 1000}"', f'"{"a" * 1001}"',
          '"a\\u0000b"', '"\\\\u0000"', "[]", "[1]", "{}", '{"a": 1}']
NAMES = ['"x"', '""', '"a b"', '"é"', '"n\\u0000"', '"sepal length (cm)"']
KEYS = [None, '"k-1"', '""', f'"{"k" * 200}"', f'"{"k" * 201}"', '"a b"', '"é"', '"k\\u0000"', "5", "null"]


def random_body(rnd) -> bytes:  # type: ignore[no-untyped-def]
    cases = []
    for _ in range(rnd.randint(1, 4)):
        fields = ", ".join(f"{rnd.choice(NAMES)}: {rnd.choice(VALUES)}" for _ in range(rnd.randint(0, 3)))
        case = [f'"features": {{{fields}}}']
        key = rnd.choice(KEYS)
        if key is not None:
            case.append(f'"key": {key}')
        if rnd.random() < 0.05:
            case.append('"extra": 1')
        cases.append("{" + ", ".join(case) + "}")
    return ('{"cases": [' + ", ".join(cases) + "]}").encode()


def test_the_quick_first_pass_accepts_only_what_case_in_accepts_as_the_same_values():
    """Valid cases skip CaseIn's Python validators (batch.checked): each body must come out exactly as CaseIn
    alone makes it, the same values of the same types, and the same refusals."""
    import random

    from decider.cases import batch

    rnd = random.Random(13)
    quick_accepted = 0
    for _ in range(3000):
        raw = random_body(rnd)
        by_case_in = batch.validate(batch.parse(raw, "application/json", 100))
        assert repr(batch.checked(raw, "application/json", 100)) == repr(by_case_in), raw
        if (cases := batch.quick(raw)) is not None:
            quick_accepted += 1
            assert repr(cases) == repr(by_case_in), raw
    # Both sides exercised: bodies the quick pass takes, and bodies only CaseIn can judge.
    assert 100 < quick_accepted < 2900
