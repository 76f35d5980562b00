"""Category and boolean fields end to end, on data made with scikit-learn and written by pandas: a CSV with
text columns trains a model whose card declares them; cases sent by name are scored, a value never seen in
training is queued as novel, a number for a category is a 422; the pages, the export and `train
--from-cases` keep the values as text."""

from __future__ import annotations

import csv
import io
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from typer.testing import CliRunner

from decider.cli import app as cli
from decider.config import load_settings
from decider.contract import UNSEEN, Contract, FieldSpec, contract_of
from decider.errors import InvalidInput
from decider.novelty import fit as fit_guard
from decider.registry.artifacts import load
from decider.registry.cards import read_card
from decider.registry.training import csv_dataset
from decider.scoring import feature_vector
from helpers import api, review_headers, write_config
from review_helpers import logged_in
from test_export import label_queue

NUMBERS = [f"x{i}" for i in range(4)]
COLOURS = ["red", "green", "blue"]
SHOPS = ["north", "south", "east", "west"]
runner = CliRunner()


def shop_frame(n: int = 1200, seed: int = 5) -> pd.DataFrame:
    """Numbers from make_classification; `colour` carries signal (class `approve` mostly red, `decline` mostly
    blue), `shop` none, `member` is a boolean (pandas writes True/False); every 40th shop is missing."""
    X, y = make_classification(n, 4, n_informative=3, n_redundant=0, class_sep=1.0, random_state=seed)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(X, columns=NUMBERS)
    frame["colour"] = np.where(y == 1, rng.choice(COLOURS, n, p=[0.75, 0.2, 0.05]),
                               rng.choice(COLOURS, n, p=[0.05, 0.2, 0.75]))
    frame["shop"] = rng.choice(SHOPS, n).astype(object)
    frame.loc[::40, "shop"] = None
    frame["member"] = rng.random(n) < 0.5
    frame["label"] = np.where(y == 1, "approve", "decline")
    return frame


def record(row: pd.Series) -> dict[str, Any]:
    """A frame row as a client sends it: numbers, category names, a boolean, null for a missing value."""
    out: dict[str, Any] = {n: float(row[n]) for n in NUMBERS}
    out |= {"colour": row["colour"], "shop": None if pd.isna(row["shop"]) else row["shop"],
            "member": bool(row["member"])}
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """`decider train --csv` with its defaults on the shop data, once for the module: (models folder, data)."""
    where = tmp_path_factory.mktemp("shop")
    frame = shop_frame()
    frame.to_csv(where / "shop.csv", index=False)
    models = where / "models"
    config = write_config(where, f"sqlite:///{where / 'train.db'}", models_dir=models, live="shop-v1")
    result = runner.invoke(cli, ["train", "--config", str(config), "--csv", str(where / "shop.csv"),
                                 "--target", "label"])
    assert result.exit_code == 0, result.output
    assert "colour (category, 3 values), shop (category, 4 values), member (boolean)" in result.stderr
    return models, frame


def clear_rows(models: Path, frame: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """`n` records the model is sure of (over 0.97) and the guard finds ordinary: cases it should decide."""
    model = load(models, "shop-v1")
    records = [record(row) for _, row in frame.iterrows()]
    matrix = model.matrix(records)
    confidence = model.predict_proba(matrix).max(axis=1)
    ordinary = [not reasons for reasons in model.guard.check(matrix, records)]
    picked = [r for r, c, ok in zip(records, confidence, ordinary, strict=True) if c > 0.97 and ok
              and r["shop"] is not None]
    assert len(picked) >= n
    return picked[:n]


# -- the pure parts ---------------------------------------------------------------------------------------


def colour_contract(categories: tuple[str, ...] = ("blue", "green", "red")) -> Contract:
    return Contract({"x": FieldSpec("x", "number", 0.0, 1.0), "colour": FieldSpec("colour", "category",
                                                                                     categories=categories),
                     "member": FieldSpec("member", "boolean", nullable=True)})


def test_a_record_is_coded_by_the_contract_of_the_model_that_scores_it():
    contract = colour_contract()
    assert feature_vector(["colour", "x", "member"], {"colour": "red", "x": 0.5, "member": True}, contract) == \
        [2.0, 0.5, 1.0]
    # Another version trained with other values codes the same name its own way.
    other = colour_contract(("red", "blue"))
    assert feature_vector(["colour"], {"colour": "red"}, other) == [0.0]
    unseen, missing = (feature_vector(["colour", "member"], values, contract) for values in (
        {"colour": "purple", "member": False}, {}))
    assert unseen == [UNSEEN, 0.0] and all(math.isnan(v) for v in missing)
    for wrong, field in (({"colour": 3.0}, "colour"), ({"member": "yes"}, "member"), ({"x": "0.5"}, "x")):
        with pytest.raises(ValueError, match=f"features.{field}: "):  # past the contract's check: never guessed
            feature_vector(["x", "colour", "member"], wrong, contract)


def test_the_contract_checks_types_but_accepts_an_unseen_category():
    contract = colour_contract()
    contract.check({"x": 0.1, "colour": "purple", "member": False}, ["x", "colour"])  # novel, not invalid
    # The value quoted as the client's JSON spelled it, not as Python would (False, '0.1').
    for given, field, words in [({"x": 0.1, "colour": 2.0}, "colour", "2.0 is not text, but the field is a "
                                 "category: send one of blue, green, red"),
                                ({"x": "0.1", "colour": "red"}, "x", '"0.1" is not a number'),
                                ({"x": False, "colour": "red"}, "x", "false is not a number"),
                                ({"x": 0.1, "colour": "red", "member": 1.0}, "member", "1.0 is not true or false"),
                                ({"x": 0.1, "colour": "red", "member": "ja"}, "member", '"ja" is not true or false'),
                                ({"x": 0.1}, "colour", "missing (the live model needs it as one of its values")]:
        with pytest.raises(InvalidInput) as refused:
            contract.check(given, ["x", "colour"])
        assert refused.value.field == f"features.{field}" and words in refused.value.message, refused.value.message
    assert contract_of({"contract": contract.as_dict()}) == contract
    numeric = Contract({**contract.fields, "colour": FieldSpec("colour", "number", 0.0, 2.0)})
    assert contract.problems_replacing(numeric) == [
        "its contract types 'colour' as a category, but clients send it as a number"]
    assert numeric.problems_for_model("m-v2", ["colour"], True, own=contract) == [
        "model 'm-v2' was trained on 'colour' as a category, but clients send it as a number"]


def test_the_guard_names_an_unseen_category_and_judges_numbers_apart():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=600), rng.integers(0, 3, 600)]).astype(float)
    guard = fit_guard(X[:400], X[400:], ["x", "colour"], [(), ("blue", "green", "red")])
    assert guard.describe()["categories"] == {"colour": ["blue", "green", "red"]}
    assert list(guard.describe()["ranges"]) == ["x"]
    rows = [[0.0, 2.0], [0.0, UNSEEN], [50.0, 1.0], [0.0, np.nan]]
    ordinary, unseen, far, missing = guard.check(rows, [{}, {"colour": "purple"}, {}, {}])
    assert ordinary == [] and missing == []
    assert unseen == [{"kind": "category", "feature": "colour",
                       "message": "colour = 'purple', not seen in training (one of: blue, green, red)"}]
    assert [r["kind"] for r in far] == ["range"] and far[0]["feature"] == "x"


def test_csv_columns_are_read_as_numbers_booleans_and_categories(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("n,zip,b,c,label\n1,01234,yes,red,a\n2,10001,no,,b\n3.5,01234,NO,blue,a\n,10001,yes,red,b\n")
    data = csv_dataset(path, "label")
    assert data.types == ["number", "number", "boolean", "category"]
    assert data.categories == {"c": ("blue", "red")}
    assert data.X[:, 2].tolist() == [1.0, 0.0, 0.0, 1.0] and np.isnan(data.X[1, 3])
    declared = csv_dataset(path, "label", categories=("zip",))
    assert declared.types[1] == "category" and declared.categories["zip"] == ("01234", "10001")
    with pytest.raises(ValueError, match=r"column 'c': line 2: 'red' is not a number; fix the cell, or"):
        csv_dataset(path, "label", numbers=("c",))
    path.write_text("n,id,label\n" + "".join(f"{i},row{i},{'ab'[i % 2]}\n" for i in range(80)))
    with pytest.raises(ValueError, match=r"column 'id' is not numeric \(line 2: 'row0'\) and has 80 distinct "
                                         r"values in 80 rows.*--exclude 'id'.*--category 'id'"):
        csv_dataset(path, "label")
    path.write_text("n,label\n" + "".join(f"{i},a\n" for i in range(9)) + "oops,b\n")
    with pytest.raises(ValueError, match=r"'oops' is not a number \(9 of its 10 values are\)"):
        csv_dataset(path, "label")


# -- trained and served -------------------------------------------------------------------------------------


def test_the_card_declares_the_categories_and_their_counts(trained):
    models, frame = trained
    card = read_card(models / "shop-v1.json")
    fields = card["contract"]["fields"]
    assert fields["colour"] == {"type": "category", "min": None, "max": None, "nullable": False,
                                "categories": ["blue", "green", "red"]}
    assert fields["shop"]["categories"] == ["east", "north", "south", "west"] and fields["shop"]["nullable"]
    assert fields["member"]["type"] == "boolean" and fields["x0"]["type"] == "number"
    counts = card["feature_stats"]["colour"]["counts"]
    assert set(counts) == set(COLOURS) and sum(counts.values()) == card["split"]["train"]
    assert set(card["feature_stats"]["member"]["counts"]) == {"false", "true"}
    assert card["feature_stats"]["shop"]["missing"] > 0
    # The colour reaches the model: the same numbers, red against blue, move the probability of `approve`.
    model = load(models, "shop-v1")
    records = [record(row) for _, row in frame.head(300).iterrows()]
    approve = model.labels.index("approve")
    red, blue = (model.predict_proba(model.matrix([r | {"colour": c} for r in records]))[:, approve]
                 for c in ("red", "blue"))
    shops = [model.predict_proba(model.matrix([r | {"shop": s} for r in records]))[:, approve] for s in SHOPS]
    assert float(np.mean(red - blue)) > 0.15
    assert float(np.mean(red - blue)) > 3 * max(float(np.mean(np.abs(a - b))) for a in shops for b in shops)


def test_cases_are_scored_by_name_and_an_unseen_value_is_queued(trained, tmp_path, db_url):
    models, frame = trained
    clear = clear_rows(models, frame, 3)
    settings = load_settings(write_config(tmp_path, db_url, models_dir=models, live="shop-v1"))
    with api(settings) as (client, h):
        decided = client.post("/api/v1/cases", json={"features": clear[0]}, headers=h)
        assert decided.status_code == 201, decided.text
        assert decided.json()["route"] == "auto" and decided.json()["novelty"] == []

        purple = client.post("/api/v1/cases", json={"features": clear[1] | {"colour": "purple"}}, headers=h).json()
        assert (purple["status"], purple["route"]) == ("pending", "queue")
        assert purple["novelty"] == [{"kind": "category", "feature": "colour",
                                      "message": "colour = 'purple', not seen in training (one of: blue, green, red)"}]

        wrong = client.post("/api/v1/cases", json={"features": clear[2] | {"colour": 2}}, headers=h)
        assert wrong.status_code == 422 and wrong.json()["field"] == "features.colour"
        assert "the field is a category: send one of blue, green, red" in wrong.json()["detail"]
        as_number = client.post("/api/v1/cases", json={"features": clear[2] | {"member": 1}}, headers=h)
        assert as_number.status_code == 422 and as_number.json()["field"] == "features.member"
        nested = client.post("/api/v1/cases", json={"features": clear[2] | {"colour": ["red"]}}, headers=h)
        assert nested.status_code == 422 and nested.json()["field"] == "features.colour"

        batch = client.post("/api/v1/batches", headers=h, json={"cases": [
            {"features": clear[2]}, {"features": clear[2] | {"shop": 7.5}}, {"features": clear[2] | {"shop": None}}]})
        results = batch.json()["results"]
        assert [r["status"] for r in results] == [201, 422, 201]
        assert results[1]["error"]["field"] == "cases[1].features.shop"

        # The stored record and the review API give the names back as text; the queue page lists the case.
        reviewer = review_headers(client, "alice")
        seen = client.get(f"/api/v1/review/cases/{purple['id']}", headers=reviewer)
        assert seen.status_code == 200 and seen.json()["features"]["colour"] == "purple"
        assert seen.json()["features"]["member"] is clear[1]["member"]
        logged_in(client, "alice")
        queue = client.get("/review")
        assert queue.status_code == 200 and f"/review/cases/{purple['id']}" in queue.text

        schema = client.get("/openapi.json").json()
        features = next(s for s in _schemas(schema) if str(s.get("title", "")).startswith("Features (contract"))
        colour = features["properties"]["colour"]
        assert colour["anyOf"][0]["enum"] == ["blue", "green", "red"] and "not seen in training" in \
            colour["description"]
        assert features["properties"]["member"]["type"] == "boolean"


def test_the_case_page_shows_category_values_as_text(trained, tmp_path, sqlite_url):
    models, frame = trained
    [row] = clear_rows(models, frame, 1)
    settings = load_settings(write_config(tmp_path, sqlite_url, models_dir=models, live="shop-v1"))
    with api(settings) as (client, h):
        case = client.post("/api/v1/cases", json={"features": row | {"colour": "purple"}}, headers=h).json()
        logged_in(client, "alice")
        page = client.get(f"/review/cases/{case['id']}")
        assert page.status_code == 200 and "purple" in page.text and row["shop"] in page.text
        assert "not seen in training" in page.text and "3 values" in page.text  # colour: red, green, blue


def _schemas(node: Any) -> list[dict[str, Any]]:
    """Every JSON object inside an OpenAPI document."""
    if isinstance(node, dict):
        return [node, *(s for v in node.values() for s in _schemas(v))]
    if isinstance(node, list):
        return [s for v in node for s in _schemas(v)]
    return []


def test_export_writes_the_values_as_text_and_train_from_cases_learns_a_new_one(trained, tmp_path, db_url):
    models = tmp_path / "models"
    shutil.copytree(trained[0], models)
    frame = shop_frame(600, seed=11)
    frame.loc[::10, "colour"] = "purple"  # a value the live version never saw: queued, then labelled
    config = write_config(tmp_path, db_url, models_dir=models, live="shop-v1", automation="audit_rate = 0.5")
    truth = {}
    with api(load_settings(config)) as (client, h):
        body = {"cases": [{"key": f"row-{i}", "features": record(row)} for i, row in frame.iterrows()]}
        results = client.post("/api/v1/batches", json=body, headers=h).json()["results"]
        assert {r["status"] for r in results} == {201}
        truth = {r["case"]["id"]: frame.loc[r["index"], "label"] for r in results}
        purple = [r["case"] for r in results if frame.loc[r["index"], "colour"] == "purple"]
        assert purple and all(c["route"] == "queue" for c in purple)
        label_queue(client, review_headers(client, "alice"), lambda case: truth[case["id"]])

    exported = runner.invoke(cli, ["export", "--config", str(config), "--out", str(tmp_path / "cases.csv")])
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "cases.csv").read_text())))
    assert {r["features.colour"] for r in rows} == {*COLOURS, "purple"}
    assert {r["features.member"] for r in rows} == {"true", "false"} and "" in {r["features.shop"] for r in rows}

    again = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", str(tmp_path / "cases.csv"),
                                "--estimator", "logistic"])
    assert again.exit_code == 0, again.output
    assert "shop-v2 fits the contract of shop-v1: it can shadow it now" in again.stderr
    card = read_card(models / "shop-v2.json")
    assert card["contract"]["fields"]["colour"]["categories"] == ["blue", "green", "purple", "red"]
    assert card["contract"]["fields"]["member"]["type"] == "boolean"
    assert card["feature_stats"]["colour"]["counts"]["purple"] > 0
    new = load(models, "shop-v2")
    [reasons] = new.guard.check(new.matrix([record(frame.loc[0])]))  # purple: a value this version knows
    assert frame.loc[0, "colour"] == "purple" and all(r["kind"] != "category" for r in reasons)
    # The same cases from the database, and from JSON lines, give the same categories.
    from_db = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", "db", "--estimator", "logistic"])
    assert from_db.exit_code == 0, from_db.output
    as_jsonl = runner.invoke(cli, ["export", "--config", str(config), "--format", "jsonl"])
    (tmp_path / "cases.jsonl").write_text(as_jsonl.stdout)
    from_jsonl = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", str(tmp_path / "cases.jsonl"),
                                     "--name", "shop-jsonl", "--estimator", "logistic"])
    assert from_jsonl.exit_code == 0, from_jsonl.output
    for other in ("shop-v3", "shop-jsonl-v1"):
        assert read_card(models / f"{other}.json")["contract"]["fields"]["colour"] == \
            card["contract"]["fields"]["colour"]
