"""`decider train --csv` with default options fits real data: every column, accuracy close to a plain
cross-validated scikit-learn model, calibration that lowers the calibration error, missing values, and a
clear refusal of text columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_wine, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from decider.cli import app as cli
from decider.config import load_settings
from helpers import api, submit, write_config


def write_csv(path: Path, X: np.ndarray, y: np.ndarray, names: list[str], target: str = "label") -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*names, target])
        for row, label in zip(X, y, strict=True):
            writer.writerow([*("" if np.isnan(v) else repr(float(v)) for v in row), f"class_{label}"])


def baseline(X: np.ndarray, y: np.ndarray) -> float:
    """What a data scientist gets in two lines: the better of a scaled logistic regression and a forest,
    5-fold cross-validated on all the rows."""
    models = [make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
              RandomForestClassifier(random_state=0)]
    return max(float(np.mean(cross_val_score(m, X, y, cv=5))) for m in models)


def train_cli(config: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["train", "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    model_id = result.stdout.strip().splitlines()[-1]
    return json.loads((load_settings(config).models_dir / f"{model_id}.json").read_text())


DATASETS = {
    "wine": lambda: (load_wine().data, load_wine().target, list(load_wine().feature_names)),
    "make_classification": lambda: (*make_classification(2000, 32, n_informative=8, n_redundant=6, n_classes=3,
                                                         random_state=0), [f"x{i}" for i in range(32)]),
}


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_default_training_fits_the_data_and_calibrates(tmp_path, sqlite_url, dataset):
    X, y, names = DATASETS[dataset]()
    write_csv(tmp_path / f"{dataset}.csv", X, y, names)
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models")
    card = train_cli(config, "--csv", str(tmp_path / f"{dataset}.csv"), "--target", "label")

    assert card["features"] == names and sorted(card["contract"]["fields"]) == sorted(names)
    assert card["test"]["accuracy"] >= baseline(X, y) - 0.05, (card["test"], card["estimator_choice"])
    cal = card["calibration"]
    assert cal["after"]["ece"] < cal["before"]["ece"], cal
    split = card["split"]
    assert split["train"] + split["calibration"] + split["test"] == len(y)
    assert cal["fitted_on"] == split["calibration"] and cal["evaluated_on"] == split["test"]
    # The held-out triples are the test rows, and the reliability points count each of them once.
    assert len(cal["holdout"]) == split["test"] == sum(p["n"] for p in cal["reliability"]["after"])
    right = np.mean([correct for _, _, correct in cal["holdout"]])
    assert right == pytest.approx(cal["after"]["accuracy"])
    # Ordinary inputs the guard sends to people: about 1% in expectation (test_novelty.py checks it by
    # repetition); on wine's 36 test rows one or two rows are already 3-6%.
    assert 0 <= card["novelty"]["flagged_on_test"] <= 0.1


def test_missing_values_train_and_null_is_allowed_only_where_training_had_gaps(tmp_path, sqlite_url):
    X, y = make_classification(600, 5, n_informative=3, n_redundant=0, random_state=2)
    X[::6, 1] = np.nan  # one column with gaps
    names = ["a", "b", "c", "d", "e"]
    write_csv(tmp_path / "gaps.csv", X, y, names)
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models", live="gaps-v1", level="assist")
    card = train_cli(config, "--csv", str(tmp_path / "gaps.csv"), "--target", "label", "--estimator", "logistic")
    assert card["contract"]["fields"]["b"]["nullable"] and not card["contract"]["fields"]["a"]["nullable"]
    assert card["feature_stats"]["b"]["missing"] > 0

    with api(load_settings(config)) as (client, h):
        record = {n: float(v) for n, v in zip(names, X[1], strict=True)}
        with_null = submit(client, h, record | {"b": None})
        assert with_null["prediction"] in {"class_0", "class_1"}
        left_out = submit(client, h, {k: v for k, v in record.items() if k != "b"})
        assert left_out["prediction"] == with_null["prediction"]
        refused = client.post("/api/v1/cases", headers=h, json={"features": record | {"a": None}})
        assert refused.status_code == 422 and refused.json()["field"] == "features.a"

    # Forward selection works on the same gaps (the selector itself refuses NaN, so it chooses on filled data).
    selected = train_cli(config, "--csv", str(tmp_path / "gaps.csv"), "--target", "label", "--select", "2")
    assert len(selected["features"]) == 2 and selected["contract"] == card["contract"]


def test_labels_spelt_missing_are_left_out_and_conflicting_options_refused(tmp_path, sqlite_url):
    X, y = make_classification(300, 4, n_informative=3, n_redundant=0, random_state=4)
    labels = np.array([f"class_{v}" for v in y], dtype=object)
    labels[:40:4], labels[1:40:4], labels[2:40:4] = "NA", "?", "null"
    path = tmp_path / "labels.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["a", "b", "c", "d", "label"])
        writer.writerows([*row, label] for row, label in zip(X, labels, strict=True))
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models")
    card = train_cli(config, "--csv", str(path), "--target", "label", "--estimator", "logistic")
    assert card["classes"] == ["class_0", "class_1"] and card["data_notes"][0].startswith("30 rows without")
    assert card["calibration"]["method"] in card["calibration"]["cv_log_loss"]  # chosen by cross-validation
    runner = CliRunner()
    for args, message in ((["--use", "a", "--select", "1"], "--use and --select both choose"),
                          (["--select", "4"], "--select 4: the data has only 4 feature columns"),
                          (["--exclude", "label"], "--exclude 'label' is the target")):
        result = runner.invoke(cli, ["train", "--config", str(config), "--csv", str(path), "--target", "label", *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_text_columns_are_refused_by_name_and_can_be_left_out(tmp_path, sqlite_url):
    path = tmp_path / "mixed.csv"
    rows = [f"r{i},{'red' if i % 2 else 'blue'},{1 + i % 2 + i / 100},{'yes' if i % 2 else 'no'}" for i in range(1, 41)]
    path.write_text("id,colour,size,label\n" + "\n".join(rows) + "\n")
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models")
    runner = CliRunner()
    refused = runner.invoke(cli, ["train", "--config", str(config), "--csv", str(path), "--target", "label"])
    assert refused.exit_code != 0 and "column 'id' is not numeric (line 2: 'r1')" in refused.output
    assert "--exclude 'id'" in refused.output
    card = train_cli(config, "--csv", str(path), "--target", "label", "--exclude", "id", "--exclude", "colour")
    assert card["features"] == ["size"] and list(card["contract"]["fields"]) == ["size"]


def test_select_keeps_k_features_and_the_whole_contract(tmp_path, sqlite_url):
    X, y, names = DATASETS["wine"]()
    write_csv(tmp_path / "wine.csv", X, y, names)
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models")
    card = train_cli(config, "--csv", str(tmp_path / "wine.csv"), "--target", "label", "--select", "3",
                     "--estimator", "logistic")
    assert len(card["features"]) == 3 and set(card["features"]) < set(names)
    assert sorted(card["contract"]["fields"]) == sorted(names)
    assert card["feature_selection"].startswith("SequentialFeatureSelector(n_features_to_select=3")


def test_one_class_is_refused_in_words(tmp_path, sqlite_url):
    path = tmp_path / "one.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i * 2},yes\n" for i in range(30)))
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models")
    result = CliRunner().invoke(cli, ["train", "--config", str(config), "--csv", str(path), "--target", "label"])
    assert result.exit_code == 2 and "every row has the label 'yes'" in result.output
