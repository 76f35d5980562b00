"""The labelled cases out: `GET /api/v1/cases/export` and `decider export`, their columns, how each label was
sampled and its weight, who may read them, and thousands of cases streamed a page at a time."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from decider.cases import export
from decider.cases.service import CASE
from decider.cli import app as cli
from helpers import AMBIGUOUS, SETOSA, api, review_headers, settings_for, submit

EXPORT = "/api/v1/cases/export"
IRIS_FIELDS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def label_queue(client: TestClient, headers: dict[str, str], label: Any) -> dict[str, list[int]]:
    """Claim and resolve every waiting case (queued and audits) with `label(case)`; the ids of each kind."""
    done: dict[str, list[int]] = {"queued": [], "audit": []}
    while (r := client.post("/api/v1/review/claim", headers=headers)).status_code == 200:
        case = r.json()
        resolved = client.post(f"/api/v1/review/cases/{case['id']}/resolve", headers=headers,
                               json={"label": label(case)})
        assert resolved.status_code == 200, resolved.text
        done["audit" if case["audit"] else "queued"].append(case["id"])
    assert r.status_code == 204, r.text
    return done


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_columns_sources_and_weights(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url, automation="audit_rate = 0.5")
    with api(settings) as (client, h):
        auto = [submit(client, h, SETOSA) for _ in range(30)]
        queued = [submit(client, h, AMBIGUOUS) for _ in range(3)]
        assert {c["route"] for c in auto} == {"auto"} and {c["route"] for c in queued} == {"queue"}
        alice, root = review_headers(client, "alice"), review_headers(client, "root")
        done = label_queue(client, alice, lambda case: "setosa" if case["audit"] else "virginica")
        audited = done["audit"]
        unchecked = [c["id"] for c in auto if c["id"] not in audited]
        assert sorted(done["queued"]) == [c["id"] for c in queued] and len(audited) >= 2 and len(unchecked) >= 2
        # An outcome from the client on an automatic decision nobody checked, and one on a queued case
        # (the person's label wins there).
        for case_id, label in ((unchecked[0], "versicolor"), (queued[1]["id"], "setosa")):
            assert client.post(f"/api/v1/cases/{case_id}/outcome", json={"label": label}, headers=h).status_code == 200
        corrected = client.post(f"/api/v1/review/cases/{queued[0]['id']}/correct", headers=root,
                                json={"label": "versicolor", "note": "long sepals after all"})
        assert corrected.status_code == 200, corrected.text
        # A case stored before audit probabilities were kept: the rate of the policy it was routed under.
        with client.app.state.runtime.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(update(CASE).where(CASE.c.id == audited[0]).values(audit_probability=None))

        r = client.get(EXPORT, headers=root)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "decider-cases.csv" in r.headers["content-disposition"]
        header = next(csv.reader(io.StringIO(r.text)))
        assert header == [*export.HEAD, *(f"features.{n}" for n in IRIS_FIELDS), *export.TAIL]
        rows = {int(row["case_id"]): row for row in rows_of(r.text)}
        jsonl = [json.loads(line) for line in client.get(EXPORT, params={"format": "jsonl"}, headers=root).text
                 .splitlines()]

    # Every labelled case once, in id order; the automatic decisions nobody labelled are not there.
    assert sorted(rows) == list(rows) == [r["case_id"] for r in jsonl]
    assert set(rows) == {*audited, unchecked[0], *(c["id"] for c in queued)}
    by_id = {r["case_id"]: r for r in jsonl}
    assert Counter(r["label_source"] for r in jsonl) == {"audit": len(audited), "queued": 2, "correction": 1,
                                                         "outcome": 1}
    audit = rows[audited[1]]
    assert (audit["label"], audit["label_source"], audit["labelled_by"], audit["route"], audit["decision"]) == \
        ("setosa", "audit", "alice", "auto", "setosa")
    assert float(audit["audit_probability"]) == 0.5 and float(audit["weight"]) == 2.0
    assert audit["model_version"] == "iris-v1" and audit["prediction"] == "setosa" and float(audit["confidence"]) > 0.9
    assert audit["features.sepal length (cm)"] == "5.0" and audit["features.petal length (cm)"] == ""
    assert by_id[audited[0]]["audit_probability"] == 0.5 and by_id[audited[0]]["weight"] == 2.0  # from the history
    person = by_id[queued[2]["id"]]
    assert (person["label"], person["label_source"], person["weight"], person["audit_probability"]) == \
        ("virginica", "queued", 1.0, None)
    assert person["features"] == AMBIGUOUS and person["labelled_at"] >= person["created_at"]
    assert by_id[queued[1]["id"]]["label"] == "virginica"  # the reviewer's label, not the client's outcome
    fixed = by_id[queued[0]["id"]]
    assert (fixed["label"], fixed["label_source"], fixed["labelled_by"], fixed["weight"]) == \
        ("versicolor", "correction", "root", 1.0)
    outcome = by_id[unchecked[0]]
    assert (outcome["label"], outcome["label_source"], outcome["labelled_by"], outcome["weight"]) == \
        ("versicolor", "outcome", "tests", 1.0)
    assert outcome["decision"] == "setosa" and outcome["decided_by"] == "model"

    # The command writes the same file, and --since / --until choose by creation time.
    out = tmp_path / "cases.csv"
    runner = CliRunner()
    done_cli = runner.invoke(cli, ["export", "--config", str(settings.config_path), "--out", str(out)])
    assert done_cli.exit_code == 0, done_cli.output
    assert out.read_text() == r.text
    assert f"exported {len(rows)} labelled cases" in done_cli.stderr and "1 correction" in done_cli.stderr
    later = runner.invoke(cli, ["export", "--config", str(settings.config_path), "--since", "2999-01-01",
                                "--format", "jsonl"])
    assert later.exit_code == 0 and later.stdout == "" and "exported 0 labelled cases" in later.stderr
    early = runner.invoke(cli, ["export", "--config", str(settings.config_path), "--until", "2000-01-01"])
    assert early.stdout.splitlines() == [",".join(header)]
    bad = runner.invoke(cli, ["export", "--config", str(settings.config_path), "--format", "xlsx"])
    assert bad.exit_code == 2 and "--format 'xlsx'" in bad.stderr


def test_only_an_admin_reads_it(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url)
    with api(settings) as (client, h):
        submit(client, h, AMBIGUOUS)
        root = review_headers(client, "root")
        assert client.get(EXPORT, headers=root).status_code == 200
        for headers, status in ((review_headers(client, "alice"), 403), (h, 403), ({}, 401),
                                ({"Authorization": "Bearer nonsense"}, 401)):
            r = client.get(EXPORT, headers=headers)
            assert r.status_code == status, r.text
            assert "detail" in r.json()
        for params, field in (({"format": "xlsx"}, "format"), ({"since": "yesterday"}, "since")):
            r = client.get(EXPORT, params=params, headers=root)
            assert r.status_code == 422 and field in r.json()["field"], r.text
        # The route is not mistaken for a case id (GET /api/v1/cases/{case_id}).
        assert client.get("/api/v1/cases/1", headers=h).status_code == 200


def test_thousands_of_cases_stream_a_page_at_a_time(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url, level="human_only")
    with api(settings) as (client, h):
        for batch in range(3):
            body = {"cases": [{"features": AMBIGUOUS, "key": f"b{batch}-{i}"} for i in range(1000)]}
            assert client.post("/api/v1/batches", json=body, headers=h).status_code == 200
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        # 3,000 labels by hand through the review API would take minutes: the same columns, set in one statement.
        with engine.begin() as conn:
            conn.execute(update(CASE).where(CASE.c.id % 3 != 0).values(
                review_status="done", review_label="setosa", reviewed_by="alice", reviewed_at=CASE.c.created_at,
                status="decided", decision="setosa", decided_by="alice", decided_at=CASE.c.created_at))
        labelled = export.count(engine)
        assert labelled == 2000
        pages = list(export.pages(engine, page=300))
        assert [len(p) for p in pages] == [300] * 6 + [200]
        ids = [r["case_id"] for p in pages for r in p]
        assert ids == sorted(set(ids)) and all(i % 3 for i in ids)

        with client.stream("GET", EXPORT, headers=review_headers(client, "root")) as r:
            assert r.status_code == 200
            chunks = list(r.iter_text())
        assert len(chunks) >= 3, "not sent a page at a time"  # the header, then a chunk per 1,000 cases
        text = "".join(chunks)
        rows = rows_of(text)
        assert len(rows) == 2000 and [int(row["case_id"]) for row in rows] == ids
        assert {row["label_source"] for row in rows} == {"queued"} and text.count("case_id") == 1


def test_an_export_file_reads_back(tmp_path: Path):
    records = [{"case_id": 1, "key": "k", "client": "c", "created_at": "2026-12-01T00:00:00+00:00",
                "features": {"a": 1.5, "b": None}, "model_version": None, "prediction": None, "confidence": None,
                "route": "queue", "decision": "x", "decided_by": "p", "label": "x", "label_source": "queued",
                "labelled_by": "p", "labelled_at": None, "audit_probability": None, "weight": 1.0}]
    as_csv, as_jsonl = tmp_path / "c.csv", tmp_path / "c.jsonl"
    as_csv.write_text(export.csv_text(records, ["a", "b"], header=True))
    as_jsonl.write_text(export.jsonl_text(records))
    for path in (as_csv, as_jsonl):
        fields, back = export.read(path)
        assert fields == ["a", "b"] and back[0]["features"] == {"a": 1.5, "b": None}
        assert back[0]["label"] == "x" and float(back[0]["weight"]) == 1.0
    as_csv.write_text(as_csv.read_text().replace("1.5", "wide"))
    with pytest.raises(ValueError, match=r"line 2: features.a is not a number \('wide'\)"):
        export.read(as_csv)


def test_a_key_a_spreadsheet_would_run_is_defused_in_csv_and_read_back_as_sent():
    from decider.cases.export import _cell, _uncell

    assert _cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert _cell("-1") == "-1" and _cell("@sum") == "'@sum" and _cell("plain") == "plain"
    assert _uncell(_cell("=cmd|' /C calc'!A0")) == "=cmd|' /C calc'!A0"
    assert _uncell("'quoted") == "'quoted"  # only the guard is taken off
