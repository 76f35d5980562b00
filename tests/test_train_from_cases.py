"""The labels come back: export -> `decider train --from-cases` -> a new version that fits the live contract and
can shadow the live model, on data made with scikit-learn; and the sampling weights reach the estimator."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold
from typer.testing import CliRunner

from decider.cli import app as cli
from decider.config import load_settings
from decider.registry.artifacts import load
from decider.registry.cards import read_card
from decider.registry.training import Dataset, choose_estimator, make_estimator, train
from decider.runtime import require_replaces
from helpers import api, review_headers, write_config
from test_export import label_queue

FIELDS = [f"x{i}" for i in range(6)]


def write_training_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    """The live model's data: a few empty x2 cells, so the live contract allows a null there."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*FIELDS, "label"])
        for i, (row, label) in enumerate(zip(X, y, strict=True)):
            writer.writerow([*("" if (j == 2 and i % 50 == 0) else repr(float(v)) for j, v in enumerate(row)),
                             f"class_{label}"])


def test_export_then_train_from_cases_gives_a_version_ready_to_shadow(tmp_path, db_url):
    X, y = make_classification(1800, 6, n_informative=4, n_redundant=0, class_sep=1.0, random_state=4)
    write_training_csv(tmp_path / "loans.csv", X[:1200], y[:1200])
    models = tmp_path / "models"
    config = write_config(tmp_path, db_url, models_dir=models, live="loans-v1", automation="audit_rate = 0.5")
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "--config", str(config), "--csv", str(tmp_path / "loans.csv"),
                                  "--target", "label", "--estimator", "logistic"])
    assert trained.exit_code == 0, trained.output
    live = load(models, "loans-v1")
    assert live.contract.fields["x2"].nullable and not live.contract.fields["x0"].nullable

    truth = {f"row-{i}": f"class_{y[i]}" for i in range(1200, 1800)}
    with api(load_settings(config)) as (client, h):
        cases = []
        for start in range(1200, 1800, 300):
            body = {"cases": [{"key": f"row-{i}", "features": dict(zip(FIELDS, map(float, X[i]), strict=True))}
                              for i in range(start, start + 300)]}
            r = client.post("/api/v1/batches", json=body, headers=h)
            assert r.status_code == 200 and {x["status"] for x in r.json()["results"]} == {201}
            cases += [x["case"] for x in r.json()["results"]]
        key_of = {c["id"]: c["key"] for c in cases}
        done = label_queue(client, review_headers(client, "alice"), lambda case: truth[key_of[case["id"]]])
        unchecked = [c for c in cases if c["route"] == "auto" and c["id"] not in done["audit"]]
        for c in unchecked[:20]:  # a client reports a few real outcomes
            r = client.post(f"/api/v1/cases/{c['id']}/outcome", json={"label": truth[c["key"]]}, headers=h)
            assert r.status_code == 200
    assert len(done["queued"]) > 100 and len(done["audit"]) > 50, {k: len(v) for k, v in done.items()}

    exported = runner.invoke(cli, ["export", "--config", str(config), "--out", str(tmp_path / "cases.csv")])
    assert exported.exit_code == 0, exported.output
    labelled = len(done["queued"]) + len(done["audit"]) + 20
    assert f"exported {labelled} labelled cases" in exported.stderr

    # (logistic: `auto` fits every candidate, and is tested below)
    again = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", str(tmp_path / "cases.csv"),
                                "--estimator", "logistic"])
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "loans-v2"
    assert "test accuracy" in again.stderr and "weighted by how each label was sampled" in again.stderr
    assert "loans-v2 fits the contract of loans-v1: it can shadow it now" in again.stderr
    assert "and later replace it" in again.stderr

    card = read_card(models / "loans-v2.json")
    assert card["data_source"] == "cases:cases.csv" and card["features"] == FIELDS
    assert sum(card["split"][k] for k in ("train", "calibration", "test")) == labelled
    notes = " ".join(card["data_notes"])
    assert f"audit {len(done['audit'])}" in notes and f"queued {len(done['queued'])}" in notes and "outcome 20" in notes
    weights = card["sample_weight"]
    assert weights["min"] == 1.0 and weights["max"] == 2.0
    assert weights["test_cases"] > card["test"]["n"] and 0.7 < weights["test_accuracy"] <= 1
    assert card["test"]["accuracy"] > 0.6  # mostly the hard cases people saw, yet better than a coin
    new = load(models, "loans-v2")
    require_replaces(new, live.contract)  # fits what clients send now, and could take over from it later
    assert new.contract.fields["x2"].nullable  # null allowed where the live contract allows it, none seen

    shadow = runner.invoke(cli, ["models", "shadow", "add", "loans-v2", "--config", str(config)])
    assert shadow.exit_code == 0, shadow.output
    listed = runner.invoke(cli, ["models", "list", "--config", str(config)])
    assert "loans-v2  [shadow]" in listed.stdout and "refused" not in listed.stdout

    # Straight from the database, and from JSON lines: the same labelled cases.
    from_db = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", "db", "--estimator", "logistic"])
    assert from_db.exit_code == 0 and from_db.stdout.strip() == "loans-v3", from_db.output
    as_jsonl = runner.invoke(cli, ["export", "--config", str(config), "--format", "jsonl"])
    (tmp_path / "cases.jsonl").write_text(as_jsonl.stdout)
    from_jsonl = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", str(tmp_path / "cases.jsonl"),
                                     "--name", "loans-jsonl", "--estimator", "logistic"])
    assert from_jsonl.exit_code == 0, from_jsonl.output
    for other in ("loans-v3", "loans-jsonl-v1"):
        other_card = read_card(models / f"{other}.json")
        assert other_card["split"] == card["split"] and other_card["sample_weight"] == card["sample_weight"]


def test_train_from_cases_refuses_what_does_not_fit(tmp_path, sqlite_url):
    X, y = make_classification(300, 6, random_state=1)
    write_training_csv(tmp_path / "loans.csv", X, y)
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models", live="loans-v1")
    runner = CliRunner()
    assert runner.invoke(cli, ["train", "--config", str(config), "--csv", str(tmp_path / "loans.csv"),
                               "--target", "label", "--estimator", "logistic"]).exit_code == 0
    both = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", "x.csv", "--csv", "y.csv"])
    assert both.exit_code == 2 and "leave out --csv" in both.stderr
    missing = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "none.csv" in missing.stderr
    # A file made for another contract: a field of the live one has no column.
    record = {"features": {"x0": 1.0}, "label": "class_0", "weight": 1.0, "label_source": "queued"}
    (tmp_path / "other.jsonl").write_text(json.dumps(record) + "\n")
    other = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", str(tmp_path / "other.jsonl")])
    assert other.exit_code == 2 and "no values for ['x1', 'x2', 'x3', 'x4', 'x5']" in other.stderr
    # Not an export at all.
    (tmp_path / "plain.csv").write_text("x0,label\n1,a\n")
    plain = runner.invoke(cli, ["train", "--config", str(config), "--from-cases", str(tmp_path / "plain.csv")])
    assert plain.exit_code == 2 and "no column 'weight'" in plain.stderr


def test_the_weights_reach_the_estimator(tmp_path):
    """Overlapping classes, the rows of one weighted 20 times: the model calls that class far more often."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (400, 2)), rng.normal(0.7, 1, (400, 2))])
    y = np.array(["a"] * 400 + ["b"] * 400)
    grid = rng.normal(0.35, 1, (2000, 2))
    shares = {}
    for name, weight in (("plain", None), ("weighted", np.where(y == "a", 20.0, 1.0))):
        data = Dataset(X, y, ["u", "v"], "synthetic", weight=weight)
        artifact = train(data, name=name, version=1, out_dir=tmp_path, estimator="logistic", calibration="none")
        shares[name] = float(np.mean(load(tmp_path, artifact.stem).estimator.predict(grid) == "a"))
    assert shares["plain"] < 0.7 and shares["weighted"] > 0.9, shares
    card = json.loads((tmp_path / "weighted-v1.json").read_text())
    assert card["sample_weight"]["max"] == 20.0 and "sample_weight" not in json.loads(
        (tmp_path / "plain-v1.json").read_text())
    # `auto` chooses by cross-validated accuracy with the weights: each fold fitted and scored with them.
    weight = np.where(y == "a", 20.0, 1.0)
    _, scores = choose_estimator(X, y, 0, lambda _step: None, weight)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    by_hand = [accuracy_score(y[judge], make_estimator("logistic", 0).fit(
        X[fit], y[fit], model__sample_weight=weight[fit]).predict(X[judge]), sample_weight=weight[judge])
        for fit, judge in folds.split(X, y)]
    assert set(scores) == {"logistic", "random_forest", "hist_gradient_boosting"}
    assert scores["logistic"] == float(np.mean(by_hand)) > 0.9  # unweighted, these classes overlap: about 0.6
